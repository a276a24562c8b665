#!/usr/bin/env bash
# Power cuts against the real broker: its data folder is a FUSE file system that forgets what was
# not synced (tests/lazyfs); each cycle runs MQTT QoS 1/2, retained, subscriptions, SQS, SNS,
# EventBridge and `$queue/` load, kills the broker, cuts the power and checks that everything
# acknowledged is there after the restart.
#
#   scripts/power-loss.sh [CUTS] [tear]
#
# CUTS defaults to 100 (the test suite runs 10); `tear` also tears the first unsynced page of every
# file at each cut. Needs root (or fuse permissions) and fusermount3 (Debian: fuse3).
set -euo pipefail
cd "$(dirname "$0")/.."
cuts="${1:-100}"
tear=0
[ "${2:-}" = "tear" ] && tear=1
command -v fusermount3 >/dev/null || { echo "fusermount3 missing: apt-get install fuse3" >&2; exit 1; }
OUTPOST_POWER_CUTS="$cuts" OUTPOST_POWER_TEAR="$tear" \
  cargo test --release -p outpost --test power_loss -- --nocapture
