#!/usr/bin/env bash
# Bridges: Outpost's bridge against mosquitto's own (`connection` in mosquitto.conf), both
# forwarding `sensors/#` to an upstream mosquitto on loopback, same run, same client
# (benches/src/bin/bridge-load.rs). Two measurements:
# - live: 8 publishers (QoS 1, window 32) for SECONDS; forwarding rate counted at the upstream,
#   with what was lost or duplicated;
# - drain: COUNT messages published while the upstream is down (Outpost keeps them in its store,
#   fsynced; mosquitto in memory), then the upstream returns; how fast they all arrive.
# usage: benches/bridge-load.sh [SECONDS] [COUNT]   (default 10 and 100000; writes
#        target/bridge-load.json and the bridge section of benches/README.md)
#        benches/bridge-load.sh --smoke             (CI: debug build, 1 s, 2,000 messages; no README)
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0
if [ "${1:-}" = --smoke ]; then
  smoke=1 seconds=1 count=2000 bin=target/debug
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin bridge-load
else
  seconds=${1:-10} count=${2:-100000} bin=target/release
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin bridge-load
fi
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf target/bridge-load-last; cp -r "$tmp" target/bridge-load-last 2>/dev/null; rm -rf "$tmp"' EXIT
up=19511 mosq=19512 outpost=19513
as_root=""
[ "$(id -u)" = 0 ] && as_root="user root"

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

# The upstream: persistence so the drain's sink session survives its restart.
mkdir -p "$tmp/up"
cat >"$tmp/up.conf" <<EOF
$as_root
listener $up 127.0.0.1
allow_anonymous true
persistence true
persistence_location $tmp/up/
max_queued_messages 0
max_inflight_messages 64
EOF
cat >"$tmp/mosq.conf" <<EOF
$as_root
listener $mosq 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 64
connection up
address 127.0.0.1:$up
clientid mosquitto-bridge
cleansession false
restart_timeout 1
topic # out 1 sensors/ gw1/sensors/
EOF
cat >"$tmp/outpost.toml" <<EOF
[[bridges]]
name = "up"
address = "127.0.0.1:$up"
backoff_min_ms = 100
backoff_max_ms = 1000
[[bridges.out]]
filter = "sensors/#"
topic = "gw1/{topic}"
qos = 1
EOF

up_pid=""
start_upstream() { mosquitto -c "$tmp/up.conf" 2>>"$tmp/up.log" & up_pid=$!; pids+=("$up_pid"); wait_port $up; }
stop_upstream() { kill -TERM "$up_pid"; wait "$up_pid" 2>/dev/null || true; }
local_pid=""
start_local() {
  if [ "$1" = outpost ]; then
    rm -rf "$tmp/data"
    "$bin/outpost" --config "$tmp/outpost.toml" --data-dir "$tmp/data" --mqtt-listen 127.0.0.1:$outpost \
      --ws-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --log error >/dev/null &
    local_pid=$!; pids+=("$local_pid"); wait_port $outpost
  else
    mosquitto -c "$tmp/mosq.conf" 2>>"$tmp/mosq.log" & local_pid=$!; pids+=("$local_pid"); wait_port $mosq
  fi
}
stop_local() { kill -TERM "$local_pid"; wait "$local_pid" 2>/dev/null || true; }
port_of() { if [ "$1" = outpost ]; then echo $outpost; else echo $mosq; fi; }

results=()
for broker in outpost mosquitto; do
  port=$(port_of $broker)
  # Live forwarding.
  rm -rf "$tmp/up"; mkdir -p "$tmp/up"
  start_upstream
  start_local $broker
  sleep 1.5 # both bridges connect (mosquitto's after its restart_timeout at most)
  live=$("$bin/bridge-load" live --seconds "$seconds" 127.0.0.1:$port 127.0.0.1:$up)
  stop_local
  # Drain of a backlog built while the upstream is down.
  "$bin/bridge-load" prepare 127.0.0.1:$up >/dev/null
  stop_upstream
  start_local $broker
  fill=$("$bin/bridge-load" fill --count "$count" 127.0.0.1:$port)
  start_upstream
  drain=$("$bin/bridge-load" drain --count "$count" 127.0.0.1:$up)
  stop_local
  stop_upstream
  results+=("{\"broker\":\"$broker\",\"live\":$live,\"fill\":$fill,\"drain\":$drain}")
done
json="[$(IFS=,; echo "${results[*]}")]"
mkdir -p target
echo "$json" >target/bridge-load.json
table=$(python3 - "$json" "$seconds" "$count" <<'PY'
import json, sys
rows = {r["broker"]: r for r in json.loads(sys.argv[1])}
o, m = rows["outpost"], rows["mosquitto"]
def ratio(a, b):
    return f"{a / b:.2f}×" if b else "n/a"
print(f"| {sys.argv[2]} s live, {int(sys.argv[3]):,}-message drain | Outpost (store: fsync) | mosquitto bridge (memory) | ratio |")
print("|---|---:|---:|---:|")
print(f"| live: forwarded/s (end to end) | {o['live']['forwarded_per_sec']:,.0f} | {m['live']['forwarded_per_sec']:,.0f} | {ratio(o['live']['forwarded_per_sec'], m['live']['forwarded_per_sec'])} |")
print(f"| live: acknowledged / lost / duplicates | {o['live']['acked']:,} / {o['live']['lost']} / {o['live']['duplicates']} | {m['live']['acked']:,} / {m['live']['lost']} / {m['live']['duplicates']} | |")
print(f"| backlog fill: acknowledged/s | {o['fill']['acked_per_sec']:,.0f} | {m['fill']['acked_per_sec']:,.0f} | {ratio(o['fill']['acked_per_sec'], m['fill']['acked_per_sec'])} |")
print(f"| drain: messages/s | {o['drain']['drained_per_sec']:,.0f} | {m['drain']['drained_per_sec']:,.0f} | {ratio(o['drain']['drained_per_sec'], m['drain']['drained_per_sec'])} |")
print(f"| drain: lost / duplicates | {o['drain']['lost']} / {o['drain']['duplicates']} | {m['drain']['lost']} / {m['drain']['duplicates']} | |")
PY
)
echo "$table"
lost=$(python3 -c 'import json,sys; print(sum(r["live"]["lost"] + r["drain"]["lost"] for r in json.loads(sys.argv[1]) if r["broker"] == "outpost"))' "$json")
if [ "$lost" != 0 ]; then
  echo "Outpost lost $lost acknowledged messages" >&2
  exit 1
fi
[ "$smoke" = 1 ] && exit 0
section=$(cat <<MD
<!-- bridge:begin (written by benches/bridge-load.sh; do not edit by hand) -->
Run $(date -u +%Y-%m-%d) on $(nproc) cores, loopback, upstream mosquitto $(mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version \(.*\)/\1/p'):
\`benches/bridge-load.sh $seconds $count\`. Ratios are Outpost's over mosquitto's.

$table
<!-- bridge:end -->
MD
)
python3 benches/readme_section.py bridge "## Bridges: store-and-forward against mosquitto's bridge" "$section"
