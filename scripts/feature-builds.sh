#!/usr/bin/env bash
# The cargo features of the `outpost` package (docs/gateways.md), checked as a small gateway would
# build them: every feature alone compiles without warnings, the MQTT-only build (with TLS) serves
# MQTT and has no HTTP port, and an SQS-only build serves SQS and refuses an API it left out, in
# that API's own protocol. Debug builds in the shared target folder (the binary at
# target/debug/outpost is the last one built here).
set -euo pipefail
cd "$(dirname "$0")/.."

for features in "" sqs iot-data bridge metrics; do
  echo "features: cargo clippy --no-default-features --features '$features'"
  cargo clippy --quiet --locked -p outpost --no-default-features --features "$features" -- -D warnings
done

echo "features: MQTT only, with TLS"
cargo build --quiet --locked -p outpost --no-default-features --features tls
cp target/debug/outpost target/debug/outpost-mqtt-only
scripts/smoke.sh --mqtt-only -- target/debug/outpost-mqtt-only

echo "features: MQTT and SQS"
cargo build --quiet --locked -p outpost --no-default-features --features sqs
cp target/debug/outpost target/debug/outpost-sqs-only
scripts/smoke.sh -- target/debug/outpost-sqs-only

# A left-out API answers in its own protocol, and says which feature would bring it.
work=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill -KILL $pid 2>/dev/null || true; rm -rf "$work"' EXIT
OUTPOST_DATA_DIR=$work/data OUTPOST_MQTT_LISTEN=127.0.0.1:0 OUTPOST_WEBSOCKET_LISTEN=127.0.0.1:0 \
  OUTPOST_HTTP_LISTEN=127.0.0.1:0 target/debug/outpost-sqs-only > "$work/log" 2>&1 &
pid=$!
deadline=$((SECONDS + 60))
until grep -q ' listening: ' "$work/log"; do
  [ $SECONDS -lt $deadline ] && kill -0 $pid || { cat "$work/log"; echo "FAILED: no start" >&2; exit 1; }
  sleep 0.2
done
http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$work/log" | head -n 1)
export AWS_ACCESS_KEY_ID=f AWS_SECRET_ACCESS_KEY=f AWS_DEFAULT_REGION=us-east-1
for call in "sns list-topics" "events list-rules"; do
  if out=$(.venv/bin/aws --endpoint-url "http://$http" $call 2>&1); then
    echo "FAILED: '$call' succeeded on a build without it: $out" >&2; exit 1
  fi
  grep -q "This broker was built without the .* API (cargo feature" <<<"$out" \
    || { echo "FAILED: '$call' was refused without saying why: $out" >&2; exit 1; }
done
kill -TERM $pid
wait $pid || { echo "FAILED: the SQS-only build did not stop cleanly" >&2; exit 1; }
echo "features: an SQS-only build refuses SNS and EventBridge calls, naming the feature"
