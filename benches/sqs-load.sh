#!/usr/bin/env bash
# SQS throughput and latency, Outpost against moto's server mode in the same run, same client
# (benches/src/bin/sqs-load.rs): SendMessage and ReceiveMessage+DeleteMessage with batches of 1 and
# 10, 8 concurrent clients. Needs .venv with moto[server] (created here if missing).
# usage: benches/sqs-load.sh [SECONDS_PER_PHASE]   (default 5; writes target/sqs-load.json)
#        benches/sqs-load.sh --smoke               (CI: debug build, Outpost only, 1 s per phase)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --smoke ]; then
  # The same build as scripts/qemu-firmware.sh's (all features: failpoints compiled in, never armed).
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin sqs-load
  bin=target/debug seconds=1 peer=0
else
  seconds=${1:-5} bin=target/release peer=1
  if [ ! -x .venv/bin/moto_server ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet 'moto[server]'
  fi
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin sqs-load
fi
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin/outpost" --data-dir "$data" --mqtt-listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:19324 --log warn >/dev/null &
pids+=($!)
targets=(outpost=http://127.0.0.1:19324)
if [ "$peer" = 1 ]; then
  .venv/bin/moto_server -H 127.0.0.1 -p 19325 >/dev/null 2>&1 &
  pids+=($!)
  targets+=(moto=http://127.0.0.1:19325)
fi
for t in "${targets[@]}"; do
  port=${t##*:}
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
"$bin/sqs-load" --seconds "$seconds" --json target/sqs-load.json "${targets[@]}"
