#!/usr/bin/env bash
# Many concurrent clients (issue 29): holds 1k, 10k and 100k MQTT clients on Outpost and on
# mosquitto, one broker at a time on this machine, with keep-alive pings, then a QoS 1 fan-out to
# all of them and a point-to-point load among them (benches/src/bin/mqtt-many.rs). Prints a
# Markdown table (raw JSON in target/many-clients.json): connect rate and p99, RSS and bytes per
# idle connection (from an empty start, and for a second batch of half as many joining a broker
# that already holds the first), idle CPU, fan-out and point-to-point rates, p99 latency, and what
# was lost.
#
# Usage: benches/many-clients.sh [--smoke] [COUNT ...]   (default 1000 10000 100000)
# Each process (the broker, the load tool) needs a descriptor per client: 100k clients need a
# hard limit above 101k (`ulimit -Hn`; raising it takes CAP_SYS_RESOURCE, which a container may
# not have). The script raises the soft limit to what it needs and refuses a count the hard limit
# cannot hold, naming it. About 6 minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
counts=()
for a in "$@"; do
  case "$a" in
    --smoke) smoke=1 ;;
    *) counts+=("$a") ;;
  esac
done
if [ ${#counts[@]} -eq 0 ]; then
  if [ $smoke = 1 ]; then counts=(200); else counts=(1000 10000 100000); fi
fi
hold=20 fan=3 p2p_rate=2000 p2p_secs=10 profile=release
if [ $smoke = 1 ]; then hold=2 fan=1 p2p_rate=200 p2p_secs=1 profile=debug; fi

max=$(printf '%s\n' "${counts[@]}" | sort -n | tail -n 1)
# Per process: one descriptor per client, and room for the store, listeners and publishers.
need=$((max + 600))
# As many as allowed: the second batch (half as many again) takes what is left.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n "$need" 2>/dev/null || true
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "many-clients: $max clients need $need descriptors per process; the hard limit here is $(ulimit -Hn) (raising it needs CAP_SYS_RESOURCE)" >&2
  exit 1
fi
command -v mosquitto >/dev/null || { echo "FAILED: mosquitto is missing" >&2; exit 1; }

if [ $profile = release ]; then
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin mqtt-many
else
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin mqtt-many
fi
bin=target/$profile
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  local deadline=$((SECONDS + 30))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "FAILED: no broker on port $1" >&2; exit 1; }
    sleep 0.1
  done
}

start() { # broker count -> sets pid, port
  port=$(free_port)
  case "$1" in
    outpost)
      rm -rf "$work/data"
      OUTPOST_DATA_DIR=$work/data OUTPOST_MQTT_LISTEN=127.0.0.1:$port \
        OUTPOST_WEBSOCKET_ENABLED=false OUTPOST_HTTP_LISTEN=127.0.0.1:0 \
        OUTPOST_MQTT_MAX_CONNECTIONS=$(($2 + 100)) OUTPOST_HTTP_MAX_CONNECTIONS=16 \
        OUTPOST_MQTT_SYS_INTERVAL=0 OUTPOST_LOG=warn \
        "$bin/outpost" > "$work/broker.log" 2>&1 &
      ;;
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n' \
        "$port" > "$work/mosquitto.conf"
      mosquitto -c "$work/mosquitto.conf" > "$work/broker.log" 2>&1 &
      ;;
  esac
  pid=$!
  wait_port "$port"
}

: > target/many-clients.json
for count in "${counts[@]}"; do
  for broker in outpost mosquitto; do
    # A second batch (half as many) joins once the first is connected and idle, and leaves
    # before the first batch's loads: what one more idle connection costs a broker that already
    # holds many (memory freed by the first batch's idle connections is reused), beside what the
    # first batch cost from an empty start.
    second=$((count / 2))
    [ $smoke = 1 ] && second=0
    if [ $((count + second + 600)) -gt "$(ulimit -n)" ]; then second=$(( $(ulimit -n) - count - 600 )); fi
    [ "$second" -lt 0 ] && second=0
    start "$broker" "$((count + second))"
    echo "many-clients: $broker, $count clients (then $second more)" >&2
    "$bin/mqtt-many" --addr "127.0.0.1:$port" --pid "$pid" --clients "$count" --hold "$hold" \
      --fanout-messages "$fan" --p2p-rate "$p2p_rate" --p2p-seconds "$p2p_secs" \
      > "$work/first.json" 2> "$work/first.err" &
    first=$!
    echo '{}' > "$work/second.json"
    rss_first=0
    if [ "$second" -gt 0 ]; then
      deadline=$((SECONDS + 120))
      until grep -q " connected in " "$work/first.err"; do
        [ $SECONDS -lt $deadline ] || { echo "FAILED: the first batch did not connect" >&2; exit 1; }
        sleep 0.2
      done
      # Idle long enough to be parked (two seconds); the first batch's idle memory is taken
      # here, before the second batch joins (and leaves its freed memory behind).
      sleep 4
      rss_first=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
      "$bin/mqtt-many" --addr "127.0.0.1:$port" --pid "$pid" --clients "$second" --hold 6 \
        --prefix second --fanout-messages 0 --p2p-seconds 0 > "$work/second.json"
    fi
    wait "$first"
    cat "$work/first.err" >&2
    python3 -c "import json,sys; r=json.load(open('$work/first.json')); s=json.load(open('$work/second.json')); r['broker']='$broker'; rf=$rss_first; n=max(r['connected'], 1); r['rss_kib']['idle_before_second'] = rf; r['bytes_per_connection_idle'] = (rf - r['rss_kib']['start']) * 1024 / n if rf else r['bytes_per_connection_idle']; r['second_batch']={'clients': s.get('clients', 0), 'connected': s.get('connected', 0), 'bytes_per_connection_idle': s.get('bytes_per_connection_idle', 0)}; print(json.dumps(r))" \
      >> target/many-clients.json
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done

python3 - "$smoke" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("target/many-clients.json") if l.strip()]
print("| broker | clients | connected | connect/s (p99 ms) | RSS idle | B/conn idle | B/conn, next idle batch | idle CPU | fan-out deliveries/s (p99 ms), lost | p2p msg/s (p99 ms), lost |")
print("|---|---|---|---|---|---|---|---|---|---|")
bad = []
for r in rows:
    c, f, p = r["connect"], r["fanout"], r["p2p"]
    sb = r.get("second_batch", {"bytes_per_connection_idle": 0, "connected": 0})
    print(f"| {r['broker']} | {r['clients']:,} | {r['connected']:,} | {c['per_second']:,.0f} ({c['latency']['p99_ms']}) "
          f"| {(r['rss_kib'].get('idle_before_second') or r['rss_kib']['idle']) / 1024:,.1f} MiB | {r['bytes_per_connection_idle']:,.0f} "
          f"| {sb['bytes_per_connection_idle']:,.0f} ({sb['connected']:,}) | {r['idle']['cpu_percent']:.1f}% "
          f"| {f['deliveries_per_second']:,.0f} ({f['latency']['p99_ms']}), {f['lost']} "
          f"| {p['delivered'] / max(r['p2p']['seconds'], 1):,.0f} ({p['latency']['p99_ms']}), {p['lost']} |")
    if r["broker"] == "outpost" and (r["connected"] < r["clients"] or f["lost"] or p["lost"]):
        bad.append(f"outpost at {r['clients']}: {r['clients'] - r['connected']} not connected, {f['lost']} + {p['lost']} lost")
if bad:
    print("FAILED: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
