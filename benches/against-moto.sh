#!/usr/bin/env bash
# Runs one HTTP load tool (benches/src/bin/<TOOL>.rs) against Outpost and moto's server mode in the
# same run, same client: what benches/sqs-load.sh and benches/sns-load.sh share.
# usage: benches/against-moto.sh TOOL OUTPOST_PORT MOTO_PORT [SECONDS | --smoke]
#   SECONDS   per phase (default 5); writes target/TOOL.json
#   --smoke   CI: debug build, Outpost only, 1 s per phase
# Needs .venv with moto[server] (created here if missing) unless --smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$1 port=$2 moto_port=$3
shift 3
if [ "${1:-}" = --smoke ]; then
  # The same build as scripts/qemu-firmware.sh's (all features: failpoints compiled in, never armed).
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin "$tool"
  bin=target/debug seconds=1 peer=0
else
  seconds=${1:-5} bin=target/release peer=1
  if [ ! -x .venv/bin/moto_server ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet 'moto[server]'
  fi
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin "$tool"
fi
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin/outpost" --data-dir "$data" --mqtt-listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 \
  --http-listen "127.0.0.1:$port" --log warn >/dev/null &
pids+=($!)
targets=("outpost=http://127.0.0.1:$port")
if [ "$peer" = 1 ]; then
  .venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
  pids+=($!)
  targets+=("moto=http://127.0.0.1:$moto_port")
fi
for t in "${targets[@]}"; do
  p=${t##*:}
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    sleep 0.1
  done
done
"$bin/$tool" --seconds "$seconds" --json "target/$tool.json" "${targets[@]}"
