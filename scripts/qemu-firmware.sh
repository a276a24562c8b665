#!/usr/bin/env bash
# Runs the example firmware (firmware-client/examples/qemu-mps2) on an emulated Cortex-M4 board
# (QEMU mps2-an386) against a real Outpost broker: the board's UART is a TCP socket that
# scripts/uart-relay.py bridges to the broker's MQTT port. The firmware subscribes, publishes QoS 1
# telemetry, receives a command that mosquitto_pub sends from the host, publishes an
# acknowledgement, and exits through semihosting; this script checks all of it. Then the shadow
# firmware (src/bin/shadow.rs): it reports its state to its Device Shadow, an application sets
# `desired` over the iot-data API, and the device applies the delta and reports it.
# Then prints the firmware's size (flash = .text + .rodata, static RAM = .data + .bss), and the size
# of one minimal firmware (QoS 1 publish + QoS 1 subscribe over the same UART-like transport) built
# with outpost-client, minimq 0.9 and rust-mqtt 0.3 (firmware-client/size-probe).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
eval "$(scripts/embedded-toolchain.sh env)"
sysroot=$(env -u RUSTC -u LD_LIBRARY_PATH -u RUSTC_BOOTSTRAP rustc --print sysroot)
export CARGO_TARGET_THUMBV7EM_NONE_EABIHF_LINKER=$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld
export CARGO_TARGET_THUMBV6M_NONE_EABI_LINKER=$CARGO_TARGET_THUMBV7EM_NONE_EABIHF_LINKER
export CARGO_TARGET_RISCV32IMC_UNKNOWN_NONE_ELF_LINKER=$CARGO_TARGET_THUMBV7EM_NONE_EABIHF_LINKER
export CARGO_TARGET_DIR=$root/target/cross
(cd firmware-client/examples/qemu-mps2 && cargo build --quiet --release -Z build-std=core)
(cd firmware-client/examples/qemu-riscv && cargo build --quiet --release -Z build-std=core)
(cd firmware-client/size-probe && cargo build --quiet --release -Z build-std=core --features mqtt5 --bin outpost)
cp "$root/target/cross/thumbv7em-none-eabihf/release/outpost" "$root/target/cross/thumbv7em-none-eabihf/release/outpost-mqtt5"
(cd firmware-client/size-probe && cargo build --quiet --release -Z build-std=core)
(cd firmware-client/size-probe && cargo build --quiet --release -Z build-std=core --target thumbv6m-none-eabi)
elf=$root/target/cross/thumbv7em-none-eabihf/release/outpost-client-qemu-mps2
restart_elf=$root/target/cross/thumbv7em-none-eabihf/release/restart
shadow_elf=$root/target/cross/thumbv7em-none-eabihf/release/shadow
riscv_elf=$root/target/cross/riscv32imc-unknown-none-elf/release/outpost-client-qemu-riscv
unset RUSTC LD_LIBRARY_PATH RUSTC_BOOTSTRAP CARGO_TARGET_DIR
# The same build as the benchmark smoke runs' (all features: failpoints compiled in, never armed).
cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost

work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
target/debug/outpost --data-dir "$work/data" --mqtt-listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --log warn > "$work/outpost.out" &
for _ in $(seq 100); do grep -q listening "$work/outpost.out" && break; sleep 0.1; done
mqtt=$(sed -n 's/.* mqtt=\([^ ]*\).*/\1/p' "$work/outpost.out")
port=${mqtt##*:}
[ -n "$port" ] || { echo "outpost did not start"; exit 1; }

relay_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 scripts/uart-relay.py "$relay_port" "127.0.0.1:$port" > "$work/relay.out" &
for _ in $(seq 100); do grep -q listening "$work/relay.out" 2>/dev/null && break; sleep 0.05; done

# The operator's side: wait for telemetry, send a command, collect the device's acknowledgement.
mosquitto_sub -p "$port" -t devices/qemu-1/telemetry -q 1 -C 3 -W 60 > "$work/telemetry" &
tel=$!
mosquitto_sub -p "$port" -t devices/qemu-1/ack -q 1 -C 1 -W 60 > "$work/ack" &
ack=$!
# Both subscriptions registered before the device starts.
http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$work/outpost.out")
for _ in $(seq 200); do
  python3 -c "import urllib.request,sys; t=urllib.request.urlopen('http://$http/metrics').read().decode(); sys.exit(0 if 'outpost_mqtt_subscriptions 2' in t else 1)" && break
  sleep 0.05
done
timeout 90 qemu-system-arm -machine mps2-an386 -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -serial "tcp:127.0.0.1:$relay_port" -kernel "$elf" > "$work/qemu.out" 2>&1 &
qemu=$!
wait $tel || { echo "no telemetry from the device"; cat "$work/qemu.out"; exit 1; }
mosquitto_pub -p "$port" -t devices/qemu-1/cmd -q 1 -m "reboot-at=02:00"
wait $ack || { echo "no acknowledgement from the device"; cat "$work/qemu.out"; exit 1; }
status=0
wait $qemu || status=$?
cat "$work/qemu.out" | grep -v "Timer with period zero" || true
[ "$status" -eq 0 ] || { echo "firmware exited with $status"; exit 1; }
[ "$(cat "$work/ack")" = "reboot-at=02:00" ] || { echo "wrong acknowledgement: $(cat "$work/ack")"; exit 1; }
[ "$(wc -l < "$work/telemetry")" -eq 3 ] || { echo "expected 3 telemetry messages"; exit 1; }
echo "qemu firmware: PASS (3 telemetry messages, command acknowledged)"
# Device Shadow (issue 30): the shadow firmware reports its LED off, an application sets it on
# through the iot-data API (UpdateThingShadow), the device gets the delta, applies it and reports;
# the shadow then holds reported on and no delta.
shadow_relay=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: > "$work/relay3.out"
python3 scripts/uart-relay.py "$shadow_relay" "127.0.0.1:$port" > "$work/relay3.out" &
for _ in $(seq 100); do grep -q listening "$work/relay3.out" 2>/dev/null && break; sleep 0.05; done
timeout 120 qemu-system-arm -machine mps2-an386 -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -serial "tcp:127.0.0.1:$shadow_relay" -kernel "$shadow_elf" > "$work/qemu3.out" 2>&1 &
qemu3=$!
python3 - "$http" <<'PY' || { cat "$work/qemu3.out"; exit 1; }
import json, sys, time, urllib.request, urllib.error
base = f"http://{sys.argv[1]}/things/qemu-3/shadow"
def get():
    try:
        return json.loads(urllib.request.urlopen(base).read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
deadline = time.time() + 60
while not ((d := get()) and d["state"].get("reported", {}).get("led") == "off"):
    assert time.time() < deadline, "the device never reported led=off"
    time.sleep(0.1)
req = urllib.request.Request(base, data=json.dumps({"state": {"desired": {"led": "on"}}}).encode(), method="POST")
print("application set desired led=on, version", json.loads(urllib.request.urlopen(req).read())["version"])
PY
status=0
wait $qemu3 || status=$?
grep -v "Timer with period zero" "$work/qemu3.out" || true
[ "$status" -eq 0 ] || { echo "shadow firmware exited with $status"; exit 1; }
python3 - "$http" <<'PY'
import json, sys, urllib.request
d = json.loads(urllib.request.urlopen(f"http://{sys.argv[1]}/things/qemu-3/shadow").read())
assert d["state"]["reported"] == {"led": "on"}, d
assert "delta" not in d["state"], d
print(f"qemu shadow firmware: PASS (delta applied and reported, version {d['version']})")
PY
# Broker restart, on both architectures: the restart firmware (firmware-client/examples/common/
# stream.rs) publishes a numbered QoS 1 stream (persistent session) while the broker is killed with
# kill -9 and started again on the same port and data folder; a persistent mosquitto_sub session
# collects the stream. Every number must arrive, in order (duplicates only as QoS 1 allows).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_broker() {
  : > "$work/restart.out"
  target/debug/outpost --data-dir "$rdata" --mqtt-listen "127.0.0.1:$rport" --ws-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --log warn > "$work/restart.out" &
  rbroker=$!
  for _ in $(seq 200); do grep -q listening "$work/restart.out" && break; sleep 0.05; done
  grep -q listening "$work/restart.out" || { echo "the broker did not start"; exit 1; }
  rhttp=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$work/restart.out")
}
# restart_run LABEL QEMU-ARGS...: the QEMU command's serial line goes to the relay.
restart_run() {
  local label=$1
  shift
  rport=$(free_port)
  rdata=$work/restart-data-$label
  start_broker
  mosquitto_sub -p "$rport" -i "watcher-$label" -c -q 1 -t devices/qemu-2/seq > "$work/seq" 2> "$work/seq.err" &
  watcher=$!
  # The watcher's subscription is in place before the device starts.
  for _ in $(seq 200); do
    python3 -c "import urllib.request,sys; t=urllib.request.urlopen('http://$rhttp/metrics').read().decode(); sys.exit(0 if 'outpost_mqtt_subscriptions 1' in t else 1)" && break
    sleep 0.05
  done
  relay2_port=$(free_port)
  : > "$work/relay2.out"
  python3 scripts/uart-relay.py "$relay2_port" "127.0.0.1:$rport" --reconnect > "$work/relay2.out" &
  for _ in $(seq 100); do grep -q listening "$work/relay2.out" 2>/dev/null && break; sleep 0.05; done
  timeout 180 "$@" -serial "tcp:127.0.0.1:$relay2_port" > "$work/qemu2.out" 2>&1 &
  qemu2=$!
  # Kill the broker once a quarter of the stream has arrived.
  for _ in $(seq 600); do [ "$(wc -l < "$work/seq")" -ge 100 ] && break; sleep 0.05; done
  [ "$(wc -l < "$work/seq")" -ge 100 ] || { echo "$label: the stream did not start"; cat "$work/qemu2.out"; exit 1; }
  kill -9 "$rbroker"
  wait "$rbroker" 2>/dev/null || true
  echo "$label: broker killed (kill -9) after $(wc -l < "$work/seq") numbers arrived; restarting it"
  start_broker
  status=0
  wait $qemu2 || status=$?
  grep -v "Timer with period zero" "$work/qemu2.out" || true
  [ "$status" -eq 0 ] || { echo "$label: restart firmware exited with $status"; exit 1; }
  # Every number at the watcher, in order of first arrival.
  python3 - "$work/seq" "$label" <<'PY' || { kill $watcher 2>/dev/null; exit 1; }
import sys, time
path, label, want = sys.argv[1], sys.argv[2], 400
deadline = time.time() + 30
while True:
    got = [int(l) for l in open(path).read().split()]
    if set(range(1, want + 1)) <= set(got) or time.time() > deadline:
        break
    time.sleep(0.1)
missing = sorted(set(range(1, want + 1)) - set(got))
firsts, seen = [], set()
for n in got:
    if n not in seen:
        seen.add(n)
        firsts.append(n)
print(f"{label}: {len(got)} deliveries, {len(seen)} distinct, {len(got) - len(seen)} duplicates, missing {missing[:10]}")
assert not missing, "acknowledged numbers lost"
assert firsts == sorted(firsts), "out of order"
print(f"{label} broker restart: PASS (every number, in order)")
PY
  kill $watcher $rbroker 2>/dev/null || true
  wait $watcher $rbroker 2>/dev/null || true
}
restart_run cortex-m4 qemu-system-arm -machine mps2-an386 -nographic -monitor none \
  -semihosting-config enable=on,target=native -kernel "$restart_elf"
restart_run riscv32 qemu-system-riscv32 -machine virt -bios none -nographic -monitor none \
  -kernel "$riscv_elf"
python3 scripts/elf-size.py "$elf" | while read -r _ flash ram; do
  echo "example firmware (thumbv7em-none-eabihf, opt-level z, LTO): flash (.text+.rodata) $flash bytes, static RAM $ram bytes"
done
probes=$root/target/cross/thumbv7em-none-eabihf/release
echo "minimal firmware, same transport and features (QoS 1 publish + subscribe), flash bytes:"
python3 scripts/elf-size.py "$probes/outpost" "$probes/minimq" "$probes/rust_mqtt" | awk '
  NR==1 {base=$2} {printf "  %-10s %6d  (outpost-client / %s = %.2f)\n", $1, $2, $1, base/$2}'
python3 scripts/elf-size.py "$probes/outpost-mqtt5" | while read -r _ flash _; do
  echo "  the same outpost-client firmware with the mqtt5 feature: $flash bytes"
done
python3 scripts/elf-size.py "$restart_elf" "$riscv_elf" | awk '
  NR==1 {printf "broker-restart firmware, same logic on both boards, flash bytes: thumbv7em %d", $2}
  NR==2 {printf ", riscv32imc %d\n", $2}'
v6m=$root/target/cross/thumbv6m-none-eabi/release
echo "the same minimal firmware for thumbv6m-none-eabi (Cortex-M0+), flash bytes:"
python3 scripts/elf-size.py "$v6m/outpost" "$v6m/minimq" "$v6m/rust_mqtt" | awk '
  NR==1 {base=$2} {printf "  %-10s %6d  (outpost-client / %s = %.2f)\n", $1, $2, $1, base/$2}'

