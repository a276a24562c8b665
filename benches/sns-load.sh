#!/usr/bin/env bash
# SNS fan-out throughput, latency and loss, Outpost against moto's server mode in the same run,
# same client (benches/src/bin/sns-load.rs): Publish to a topic with 1 and 10 SQS subscriptions,
# and SendMessageBatch of 10 as the reference for the 10-queue fan-out. 8 concurrent clients.
# Needs .venv with moto[server] (created here if missing).
# usage: benches/sns-load.sh [SECONDS_PER_SCENARIO]   (default 5; writes target/sns-load.json)
#        benches/sns-load.sh --smoke                  (CI: debug build, Outpost only, 1 s each)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --smoke ]; then
  # The same build as scripts/qemu-firmware.sh's (all features: failpoints compiled in, never armed).
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin sns-load
  bin=target/debug seconds=1 peer=0
else
  seconds=${1:-5} bin=target/release peer=1
  if [ ! -x .venv/bin/moto_server ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet 'moto[server]'
  fi
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin sns-load
fi
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin/outpost" --data-dir "$data" --mqtt-listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:19334 --log warn >/dev/null &
pids+=($!)
targets=(outpost=http://127.0.0.1:19334)
if [ "$peer" = 1 ]; then
  .venv/bin/moto_server -H 127.0.0.1 -p 19335 >/dev/null 2>&1 &
  pids+=($!)
  targets+=(moto=http://127.0.0.1:19335)
fi
for t in "${targets[@]}"; do
  port=${t##*:}
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
"$bin/sns-load" --seconds "$seconds" --json target/sns-load.json "${targets[@]}"
