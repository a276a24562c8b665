#!/usr/bin/env bash
# What a rule costs: MQTT QoS 1 publish → EventBridge rule → SQS queue against a plain
# SendMessage and a plain MQTT publish, with 1 and 1,000 rules on the bus, loss counted
# (benches/src/bin/routing-load.rs). Outpost only: no peer broker has EventBridge rules.
# usage: benches/routing-load.sh [SECONDS_PER_SCENARIO]   (default 5; writes target/routing-load.json)
#        benches/routing-load.sh --smoke                  (CI: debug build, 1 s each)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --smoke ]; then
  # The same build as scripts/qemu-firmware.sh's (all features: failpoints compiled in, never armed).
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin routing-load
  bin=target/debug seconds=1
else
  seconds=${1:-5} bin=target/release
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin routing-load
fi
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin/outpost" --data-dir "$data" --mqtt-listen 127.0.0.1:19383 --ws-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:19344 --log warn >/dev/null &
pids+=($!)
for port in 19344 19383; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
"$bin/routing-load" --seconds "$seconds" --json target/routing-load.json \
  http://127.0.0.1:19344 127.0.0.1:19383
