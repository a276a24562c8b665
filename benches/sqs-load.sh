#!/usr/bin/env bash
# SQS throughput and latency, Outpost against moto's server mode in the same run, same client
# (benches/src/bin/sqs-load.rs): SendMessage and ReceiveMessage+DeleteMessage with batches of 1 and
# 10, 8 concurrent clients. Needs .venv with moto[server] (created here if missing).
# usage: benches/sqs-load.sh [SECONDS_PER_PHASE] (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
if [ ! -x .venv/bin/moto_server ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet 'moto[server]'
fi
cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin sqs-load
data=$(mktemp -d)
target/release/outpost --data-dir "$data" --mqtt-listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:19324 --log warn >/dev/null &
outpost=$!
.venv/bin/moto_server -H 127.0.0.1 -p 19325 >/dev/null 2>&1 &
moto=$!
trap 'kill $outpost $moto 2>/dev/null; rm -rf "$data"' EXIT
for port in 19324 19325; do
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break
    curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.1
  done
done
target/release/sqs-load --seconds "$seconds" --json target/sqs-load.json \
  outpost=http://127.0.0.1:19324 moto=http://127.0.0.1:19325
