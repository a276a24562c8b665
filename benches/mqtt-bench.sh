#!/usr/bin/env bash
# End-to-end MQTT benchmark: Outpost, mosquitto and rumqttd, one after another on loopback, the same
# scenarios and client settings (benches/src/bin/mqtt-bench.rs). Writes target/mqtt-bench.json and
# prints the Markdown tables for benches/README.md. A few minutes; --full runs 5x longer.
# Needs mosquitto (Debian package); installs rumqttd with cargo into ~/.cache/outpost-peers if missing.
#
# Options of this script (the rest go to mqtt-bench):
#   --pin CPUS        run each broker on these CPUs only (taskset list, e.g. 0 or 0-1); the load
#                     tool runs on the others when any are left (core-scaling runs: benches/scaling.sh)
#   --brokers LIST    only these brokers, comma-separated (default outpost,mosquitto,rumqttd)
#   --tls             every client over TLS (a throwaway CA and certificate made here with openssl;
#                     Outpost's TLS listener, mosquitto's with OpenSSL; rumqttd is left out)
set -euo pipefail
cd "$(dirname "$0")/.."
flags=()
pin=""
brokers="outpost,mosquitto,rumqttd"
tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pin) pin=$2; shift 2 ;;
    --brokers) brokers=$2; shift 2 ;;
    --tls) tls=1; brokers=${brokers/,rumqttd/}; shift ;;
    *) flags+=("$1"); shift ;;
  esac
done
broker_cmd=()
load_cmd=()
if [ -n "$pin" ]; then
  broker_cmd=(taskset -c "$pin")
  rest=$(python3 -c 'import os,sys
pin=set()
for part in sys.argv[1].split(","):
    a,_,b=part.partition("-"); pin.update(range(int(a), int(b or a)+1))
left=sorted(set(os.sched_getaffinity(0))-pin)
print(",".join(map(str,left)))' "$pin")
  if [ -n "$rest" ]; then load_cmd=(taskset -c "$rest"); fi
fi
peers=${OUTPOST_PEERS_DIR:-$HOME/.cache/outpost-peers}
if [ ! -x "$peers/bin/rumqttd" ]; then
  echo "installing rumqttd into $peers (about 2.5 minutes)" >&2
  # Not --locked: its lock file pins a `metrics` release that current rustc rejects.
  cargo install rumqttd --quiet --root "$peers"
fi
cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin mqtt-bench
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2; return 1
}

# Over TLS: a CA, and a certificate for localhost and 127.0.0.1 signed by it, which the load
# tool trusts (OUTPOST_BENCH_CA); each broker listens for TLS on its own port.
scheme="" outpost_port=19883 mosquitto_port=19884 outpost_tls="" mosquitto_tls=""
if [ $tls = 1 ]; then
  command -v openssl >/dev/null || { echo "FAILED: openssl is missing" >&2; exit 1; }
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=bench CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$work/key.pem" -out "$work/leaf.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/leaf.ext"
  openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -out "$work/cert.pem" -days 2 -extfile "$work/leaf.ext" 2>/dev/null
  export OUTPOST_BENCH_CA=$work/ca.pem
  scheme="tls://" outpost_port=19886 mosquitto_port=19887
  outpost_tls="[tls]
cert_file = \"$work/cert.pem\"
key_file = \"$work/key.pem\"
mqtt_listen = \"127.0.0.1:$outpost_port\"
ws_listen = \"127.0.0.1:0\"
https_listen = \"127.0.0.1:0\""
  # Run as root, mosquitto drops to its own user, which cannot read this folder.
  mosquitto_tls="listener $mosquitto_port 127.0.0.1
certfile $work/cert.pem
keyfile $work/key.pem"
  if [ "$(id -u)" = 0 ]; then mosquitto_tls="$mosquitto_tls
user root"; fi
fi

# Every broker gets the same outgoing window: 100 QoS 1/2 messages in flight per client.
# Outpost: default durability (fsync before PUBACK for stored messages), the offline queue limit
# raised like the peers' (connected subscribers are kept far below it by flow control, which
# starts at the default 1,000 queued messages).
cat > "$work/outpost.toml" <<CONF
data_dir = "$work/outpost-data"
log = "warn"
[mqtt]
listen = "127.0.0.1:19883"
max_queued_messages = 1000000
max_inflight = 100
sys_interval = 0
[websocket]
enabled = false
[http]
listen = "127.0.0.1:0"
$outpost_tls
CONF
# mosquitto: persistence on (it saves on a timer, not per message), no queue limit in the way.
cat > "$work/mosquitto.conf" <<CONF
listener 19884 127.0.0.1
allow_anonymous true
persistence true
persistence_location $work/
max_queued_messages 1000000
max_inflight_messages 100
max_connections -1
$mosquitto_tls
CONF
# rumqttd: one MQTT 3.1.1 listener with room for the scenarios.
cat > "$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 100010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:19885"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
CONF

run() {
  local name=$1 port=$2; shift 2
  case ",$brokers," in *",$name,"*) ;; *) echo '[]' > "$work/$name.json"; return 0 ;; esac
  "${broker_cmd[@]}" "$@" > "$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$port"
  "${load_cmd[@]}" target/release/mqtt-bench "${flags[@]}" --json "$work/$name.json" "$name=${scheme}127.0.0.1:$port@$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
run outpost "$outpost_port" target/release/outpost --config "$work/outpost.toml"
run mosquitto "$mosquitto_port" mosquitto -c "$work/mosquitto.conf"
run rumqttd 19885 "$peers/bin/rumqttd" -c "$work/rumqttd.toml" -q
python3 - "$work" > target/mqtt-bench.json <<'PY'
import json, sys
out = []
for name in ("outpost", "mosquitto", "rumqttd"):
    out += json.load(open(f"{sys.argv[1]}/{name}.json"))
print(json.dumps(out, indent=1))
PY
sizes=$(stat -c %s target/release/outpost "$(command -v mosquitto)" "$peers/bin/rumqttd" | paste -sd' ')
python3 benches/mqtt_table.py target/mqtt-bench.json $sizes
