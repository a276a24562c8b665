#!/usr/bin/env bash
# Runs every benchmark (a few minutes on 2 cores) and prints the Markdown tables that go into
# benches/README.md. Each table compares against peers measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p outpost-benches "$@"
echo "## codec"
python3 benches/criterion_table.py target/criterion "" mqttbytes
echo "## store"
python3 benches/store_table.py target/criterion
