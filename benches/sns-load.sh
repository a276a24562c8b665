#!/usr/bin/env bash
# SNS fan-out throughput, latency and loss, Outpost against moto's server mode in the same run,
# same client (benches/src/bin/sns-load.rs): Publish to a topic with 1 and 10 SQS subscriptions,
# and SendMessageBatch of 10 as the reference for the 10-queue fan-out. 8 concurrent clients.
# Needs .venv with moto[server] (created here if missing).
# usage: benches/sns-load.sh [SECONDS_PER_SCENARIO]   (default 5; writes target/sns-load.json)
#        benches/sns-load.sh --smoke                  (CI: debug build, Outpost only, 1 s each)
exec "$(dirname "$0")/against-moto.sh" sns-load 19334 19335 "$@"
