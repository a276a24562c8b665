#!/usr/bin/env bash
# What an idle connection costs Outpost over each transport (issue 29: ≤ 1 KiB TCP, ≤ 2 KiB
# WebSocket, TLS as small as rustls allows): the same client (MQTT.js,
# benches/node/idle-clients.mjs) holds COUNT connections over plain TCP, WebSocket, TLS and
# WebSocket over TLS, each subscribed at QoS 1 to a shared topic and its own, on a fresh broker
# each time; the broker's anonymous memory before and after, divided by COUNT. The TLS listeners
# use a throwaway self-signed certificate (openssl).
# mosquitto (when installed) is measured over TCP and TLS the same way; not over WebSocket: Debian's
# mosquitto 2.0.11 refuses to open a websockets listener on this machine ("Unable to start any
# listening sockets").
#
# Usage: benches/many-websocket.sh [--smoke] [COUNT]   (default 2000; --smoke: 50, debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
count=2000 profile=release
for a in "$@"; do
  case "$a" in
    --smoke) count=50 profile=debug ;;
    *) count=$a ;;
  esac
done
command -v node >/dev/null || { echo "FAILED: node is missing" >&2; exit 1; }
command -v openssl >/dev/null || { echo "FAILED: openssl is missing" >&2; exit 1; }
[ -d tests/interop/mqttjs/node_modules/mqtt ] || (cd tests/interop/mqttjs && npm ci --silent --no-audit --no-fund)
if [ $profile = release ]; then
  cargo build --quiet --release -p outpost --bin outpost
else
  cargo build --quiet --all-features -p outpost --bin outpost
fi
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
pid="" holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 2>/dev/null
# N free loopback ports, distinct: all N are held at once while the kernel picks them (picked one
# at a time, two could be the same, and the broker would then fail to bind its second listener).
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}
anon_kib() { awk '/^Anonymous:/ {print $2}' "/proc/$1/smaps_rollup"; }
# Waits for the broker (PID $pid, log $2) to listen on port $1; a broker that exited says why.
wait_port() {
  local deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "FAILED: the broker exited before listening on port $1; its log:" >&2; cat "$2" >&2; exit 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "FAILED: no broker on port $1" >&2; cat "$2" >&2; exit 1; }
    sleep 0.1
  done
}

# Holds COUNT idle MQTT.js clients on URL against the broker PID; prints the table's row.
measure() {
  local broker=$1 transport=$2 url=$3 before after ok failed deadline
  sleep 1
  before=$(anon_kib "$pid")
  mkfifo "$work/hold"
  node benches/node/idle-clients.mjs "$url" "$count" < "$work/hold" > "$work/ready" 2> "$work/client.log" &
  holder=$!
  exec 4>"$work/hold"
  deadline=$((SECONDS + 120))
  until grep -q '^ready' "$work/ready"; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$holder" 2>/dev/null; then
      echo "FAILED: the clients did not connect to $broker over $transport:" >&2; cat "$work/ready" "$work/client.log" >&2; exit 1
    fi
    sleep 0.2
  done
  read -r _ ok _ failed < "$work/ready"
  if [ "$ok" != "$count" ]; then
    echo "FAILED: $ok of $count clients subscribed to $broker over $transport ($failed failed)" >&2; exit 1
  fi
  sleep 3
  after=$(anon_kib "$pid")
  echo "| $broker | $transport | $count | $before KiB | $after KiB | $(( (after - before) * 1024 / count )) |"
  exec 4>&-
  wait "$holder" 2>/dev/null || true
  holder=""
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -f "$work/hold" "$work/ready"
}

echo "| broker | transport | clients | anonymous memory before | after | bytes per idle connection |"
echo "|---|---|---|---|---|---|"
for transport in tcp websocket tls wss; do
  read -r mqtt ws mqtts wss <<< "$(free_ports 4)"
  rm -rf "$work/data"
  OUTPOST_TLS_CERT_FILE=$work/cert.pem OUTPOST_TLS_KEY_FILE=$work/key.pem \
    OUTPOST_TLS_MQTT_LISTEN=127.0.0.1:$mqtts OUTPOST_TLS_WS_LISTEN=127.0.0.1:$wss \
    OUTPOST_TLS_HTTPS_LISTEN=127.0.0.1:0 \
    OUTPOST_DATA_DIR=$work/data OUTPOST_MQTT_LISTEN=127.0.0.1:$mqtt OUTPOST_WEBSOCKET_LISTEN=127.0.0.1:$ws \
    OUTPOST_HTTP_LISTEN=127.0.0.1:0 OUTPOST_MQTT_MAX_CONNECTIONS=$((count + 100)) \
    OUTPOST_MQTT_SYS_INTERVAL=0 OUTPOST_LOG=warn \
    "target/$profile/outpost" > "$work/broker.log" 2>&1 &
  pid=$!
  for p in "$mqtt" "$ws" "$mqtts" "$wss"; do wait_port "$p" "$work/broker.log"; done
  case $transport in
    tcp) url="mqtt://127.0.0.1:$mqtt" ;;
    websocket) url="ws://127.0.0.1:$ws/mqtt" ;;
    tls) url="mqtts://127.0.0.1:$mqtts" ;;
    wss) url="wss://127.0.0.1:$wss/mqtt" ;;
  esac
  measure outpost "$transport" "$url"
done

# mosquitto over TCP and TLS (OpenSSL), the same clients and certificate.
if command -v mosquitto >/dev/null; then
  for transport in tcp tls; do
    port=$(free_ports 1)
    {
      echo "per_listener_settings false"
      # Run as root, mosquitto drops to its own user, which cannot read this folder.
      if [ "$(id -u)" = 0 ]; then echo "user root"; fi
      echo "allow_anonymous true"
      echo "listener $port 127.0.0.1"
      if [ $transport = tls ]; then
        echo "certfile $work/cert.pem"
        echo "keyfile $work/key.pem"
      fi
    } > "$work/mosquitto.conf"
    mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
    pid=$!
    wait_port "$port" "$work/mosquitto.log"
    if [ $transport = tls ]; then url="mqtts://127.0.0.1:$port"; else url="mqtt://127.0.0.1:$port"; fi
    measure mosquitto "$transport" "$url"
  done
fi
