#!/usr/bin/env bash
# The end-to-end benchmarks in one command: MQTT (Outpost vs mosquitto vs rumqttd) and SQS (Outpost
# vs moto), same run, same machine. Rewrites the section between the e2e markers in
# benches/README.md and leaves the raw figures in target/mqtt-bench.json and target/sqs-load.json.
# A few minutes by default; --full runs the MQTT scenarios 5x longer and SQS phases for 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."
full=()
sqs_seconds=5
if [ "${1:-}" = --full ]; then full=(--full); sqs_seconds=20; fi
mqtt=$(benches/mqtt-bench.sh "${full[@]}")
sqs=$(benches/sqs-load.sh "$sqs_seconds")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
section=$(cat <<MD
<!-- e2e:begin (written by benches/e2e.sh; do not edit by hand) -->
Run $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu), loopback, brokers one after another, same client:
\`benches/e2e.sh${full:+ --full}\`. Ratios are Outpost's figure over the peer's (for latency, memory
and size: the peer's over Outpost's), so above 1.00× means Outpost is better.

### MQTT: Outpost vs mosquitto $(mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version \(.*\)/\1/p') vs rumqttd $(~/.cache/outpost-peers/bin/rumqttd -V 2>/dev/null | awk '{print $2}')

$mqtt

### SQS: Outpost vs moto $(.venv/bin/python -c 'import moto; print(moto.__version__)' 2>/dev/null) (server mode), 8 clients, AWS JSON 1.0

$sqs
<!-- e2e:end -->
MD
)
python3 benches/readme_section.py e2e "## End to end: brokers and queues against their peers" "$section"
echo "benches/README.md updated"
