#!/usr/bin/env bash
# SQS throughput and latency, Outpost against moto's server mode in the same run, same client
# (benches/src/bin/sqs-load.rs): SendMessage and ReceiveMessage+DeleteMessage with batches of 1 and
# 10, 8 concurrent clients. Needs .venv with moto[server] (created here if missing).
# usage: benches/sqs-load.sh [SECONDS_PER_PHASE]   (default 5; writes target/sqs-load.json)
#        benches/sqs-load.sh --smoke               (CI: debug build, Outpost only, 1 s per phase)
exec "$(dirname "$0")/against-moto.sh" sqs-load 19324 19325 "$@"
