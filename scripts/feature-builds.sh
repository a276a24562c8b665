#!/usr/bin/env bash
# The cargo features of the `outpost` package (docs/gateways.md), checked as a small gateway would
# build them: every feature alone compiles without warnings, the MQTT-only build (with TLS) serves
# MQTT and has no HTTP port, and an SQS-only build serves SQS and refuses an API it left out, in
# that API's own protocol, naming the feature. Debug builds in the shared target folder (the
# binary at target/debug/outpost is the last one built here).
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
scripts/smoke.sh --left-out "sns list-topics" --left-out "events list-rules" \
  -- target/debug/outpost-sqs-only
