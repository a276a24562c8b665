#!/usr/bin/env bash
# Point-to-point MQTT throughput, Outpost and mosquitto in the same run (first step of the end-to-end
# benchmark harness): 4 publisher/subscriber pairs, 20,000 messages each, 16-byte payloads, QoS 0 and 1.
# Needs mosquitto (Debian package). Prints one line per broker and QoS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin mqtt-load
data=$(mktemp -d)
conf=$(mktemp)
printf 'listener 19884 127.0.0.1\nallow_anonymous true\n' > "$conf"
target/release/outpost --data-dir "$data" --mqtt-listen 127.0.0.1:19883 --ws-listen 127.0.0.1:0 --log warn >/dev/null &
outpost=$!
mosquitto -c "$conf" >/dev/null 2>&1 &
mosquitto=$!
trap 'kill $outpost $mosquitto 2>/dev/null; rm -rf "$data" "$conf"' EXIT
sleep 1
for qos in 0 1; do
  for broker in outpost:19883 mosquitto:19884; do
    printf '%-10s QoS %s: ' "${broker%%:*}" "$qos"
    target/release/mqtt-load "127.0.0.1:${broker##*:}" 4 20000 "$qos" 16 | tail -n 1
  done
done
