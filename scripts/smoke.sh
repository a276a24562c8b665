#!/usr/bin/env bash
# A smoke test of one broker build with real clients: MQTT through mosquitto's clients and SQS
# through the aws CLI, against a broker started by the command given (a cross-built binary under
# qemu-user, or the one a Debian package installed).
#
# Usage: scripts/smoke.sh [--as USER] [--data DIR] [--mqtt-only] [--left-out "SERVICE OP"]... -- COMMAND [ARGS...]
#   e.g. scripts/smoke.sh -- qemu-aarch64 -L /usr/aarch64-linux-gnu target/.../outpost
#        scripts/smoke.sh --as outpost --data /var/lib/outpost -- /usr/bin/outpost --config /etc/outpost/outpost.toml
#
# The broker listens on free loopback ports (OUTPOST_*_LISTEN=127.0.0.1:0) and reports them on its
# first stdout line; every wait has a deadline (long ones: an emulated CPU is slow to start).
# Needs mosquitto_pub/mosquitto_sub and .venv/bin/aws (scripts/test.sh installs both).
# --mqtt-only: the broker was built without HTTP (cargo features): it must say `http=off`.
# --left-out "sns list-topics": an aws CLI call to an API the build left out; it must be refused
#   with the reason (the cargo feature named).
set -euo pipefail
cd "$(dirname "$0")/.."

run_as=""
data=""
mqtt_only=0
left_out=()
while [ $# -gt 0 ]; do
  case "$1" in
    --as) run_as=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --mqtt-only) mqtt_only=1; shift ;;
    --left-out) left_out+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--as USER] [--data DIR] [--mqtt-only] [--left-out CALL]... -- COMMAND [ARGS...]" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "smoke: no broker command given" >&2; exit 2; }
AWS=${AWS:-$PWD/.venv/bin/aws}
for tool in mosquitto_pub mosquitto_sub "$AWS"; do
  command -v "$tool" >/dev/null || { echo "FAILED: smoke test needs $tool" >&2; exit 1; }
done

work=$(mktemp -d)
chmod 755 "$work"
if [ -z "$data" ]; then
  data=$work/data
fi
log=$work/broker.log
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAILED: $*" >&2
  echo "--- broker log ---" >&2
  tail -n 40 "$log" >&2 || true
  exit 1
}

env_vars=(
  OUTPOST_DATA_DIR="$data"
  OUTPOST_MQTT_LISTEN=127.0.0.1:0
  OUTPOST_WEBSOCKET_LISTEN=127.0.0.1:0
  OUTPOST_HTTP_LISTEN=127.0.0.1:0
  OUTPOST_MQTT_SYS_INTERVAL=0
)
if [ -n "$run_as" ]; then
  # setpriv execs (runuser would stay as a parent and answer SIGTERM itself).
  setpriv --reuid="$run_as" --regid="$run_as" --init-groups -- env "${env_vars[@]}" "$@" > "$log" 2>&1 &
else
  env "${env_vars[@]}" "$@" > "$log" 2>&1 &
fi
pid=$!

# The first stdout line names the ports: "outpost X listening: mqtt=A ws=B http=C data=D".
deadline=$((SECONDS + 120))
until grep -q ' listening: ' "$log"; do
  kill -0 "$pid" 2>/dev/null || fail "the broker exited before listening"
  [ $SECONDS -lt $deadline ] || fail "the broker did not listen within 120 s"
  sleep 0.2
done
line=$(grep ' listening: ' "$log" | head -n 1)
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
mqtt=$(field mqtt)
http=$(field http)
mqtt_port=${mqtt##*:}
echo "smoke: broker up: mqtt=$mqtt http=$http"

# MQTT: a persistent QoS 1 session gets what was published while it was away, and a retained
# message reaches a new subscriber. mosquitto_pub exits 0 only after the PUBACK.
mosquitto_sub -p "$mqtt_port" -h 127.0.0.1 -i smoke-sub -c -q 1 -t smoke/queued -E -W 60 \
  || fail "mosquitto_sub could not subscribe"
mosquitto_pub -p "$mqtt_port" -h 127.0.0.1 -q 1 -t smoke/queued -m "while away" \
  || fail "mosquitto_pub (QoS 1) was not acknowledged"
got=$(mosquitto_sub -p "$mqtt_port" -h 127.0.0.1 -i smoke-sub -c -q 1 -t smoke/queued -C 1 -W 60) \
  || fail "the persistent session got nothing"
[ "$got" = "while away" ] || fail "the persistent session got '$got'"
mosquitto_pub -p "$mqtt_port" -h 127.0.0.1 -q 1 -r -t smoke/retained -m "kept" \
  || fail "mosquitto_pub (retained) was not acknowledged"
got=$(mosquitto_sub -p "$mqtt_port" -h 127.0.0.1 -q 1 -t smoke/retained -C 1 -W 60) \
  || fail "no retained message"
[ "$got" = "kept" ] || fail "the retained message was '$got'"
echo "smoke: MQTT ok (queued QoS 1 delivery, retained message)"

if [ $mqtt_only = 1 ]; then
  [ "$http" = off ] || fail "an MQTT-only build listens for HTTP on $http"
  echo "smoke: no HTTP port, as built"
else
# SQS through the aws CLI, unchanged.
export AWS_ACCESS_KEY_ID=smoke AWS_SECRET_ACCESS_KEY=smoke AWS_DEFAULT_REGION=us-east-1
aws() { "$AWS" --endpoint-url "http://$http" --output text "$@"; }
url=$(aws sqs create-queue --queue-name smoke --query QueueUrl) || fail "CreateQueue"
aws sqs send-message --queue-url "$url" --message-body "hello from smoke" > /dev/null || fail "SendMessage"
body=$(aws sqs receive-message --queue-url "$url" --wait-time-seconds 20 --query 'Messages[0].Body') \
  || fail "ReceiveMessage"
[ "$body" = "hello from smoke" ] || fail "ReceiveMessage returned '$body'"
echo "smoke: SQS ok (CreateQueue, SendMessage, ReceiveMessage)"
# A left-out API answers in its own protocol, and says which feature would bring it.
for call in "${left_out[@]}"; do
  # shellcheck disable=SC2086 # the call is words: service and operation
  if out=$(aws $call 2>&1); then
    fail "'$call' succeeded on a build without it: $out"
  fi
  grep -q "This broker was built without the .* API (cargo feature" <<<"$out" \
    || fail "'$call' was refused without saying why: $out"
  echo "smoke: '$call' refused, naming the feature"
done
fi

# A clean stop on SIGTERM.
kill -TERM "$pid"
deadline=$((SECONDS + 60))
while kill -0 "$pid" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "the broker did not stop within 60 s of SIGTERM"
  sleep 0.2
done
wait "$pid" && status=0 || status=$?
[ "$status" = 0 ] || fail "the broker exited with $status after SIGTERM"
pid=""
echo "smoke: passed"
