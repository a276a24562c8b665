#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs what the tests need that is
# missing, then runs formatting and lint checks, unit/property/integration tests, the no_std cross
# builds, a bounded fuzz run of the MQTT decoder and a smoke run of every benchmark.
#
# Knobs (environment):
#   OUTPOST_FUZZ_SECONDS   how long the decoder fuzzer runs (default 40; the tree, query-parser
#                          and HTTP request fuzzers run half as long each; 0 skips them all)
#   OUTPOST_SKIP_INSTALL=1 do not install packages (for machines that already have them)
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${OUTPOST_FUZZ_SECONDS:-40}
# A CI machine's disk can be small (a run once stopped with "No space left on device"): debug
# info was ~90 % of every test binary, even as line tables, and incremental caches only help
# repeated local builds. A panic still names its file and line (the message carries it, not the
# debug info); only backtraces lose line numbers. Either can be overridden from the environment,
# e.g. CARGO_PROFILE_DEV_DEBUG=line-tables-only to debug a failure.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0}

# On CI (CI=true), what a step built and no later step needs is removed once the step passed, so
# the run fits a small disk; a local run keeps everything for the next build.
on_ci() { [ "${CI:-}" = true ]; }
free_disk() {
  if on_ci; then rm -rf "$@"; fi
}

# Each step names itself and the disk left (a full disk is a failure worth seeing coming).
step() { printf '\n==> %s   [disk free: %s]\n' "$*" "$(df -h --output=avail . 2>/dev/null | tail -n 1 | tr -d ' ')"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  command -v mosquitto >/dev/null || missing+=(mosquitto)
  command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
  command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
  command -v qemu-system-riscv32 >/dev/null || missing+=(qemu-system-misc)
  # The ARM gateway builds run under user-mode emulation, linked by Debian's cross compilers.
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  command -v arm-linux-gnueabihf-gcc >/dev/null || missing+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
  # `systemd-analyze verify` checks deploy/outpost.service (tests/deploy.rs).
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v node >/dev/null || missing+=(nodejs npm)
  # A throwaway certificate for the TLS transports of benches/many-websocket.sh.
  command -v openssl >/dev/null || missing+=(openssl)
  # Fetches Debian's std for ARM from the pool when a mirror serves a stale list (embedded-toolchain.sh).
  command -v curl >/dev/null || missing+=(curl)
  # fusermount3 mounts the power-cut file system of tests/power_loss.rs.
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  # strace holds a test broker's fsyncs: a slow disk on demand (tests/support: Outpost::slow_disk).
  command -v strace >/dev/null || missing+=(strace)
  # The web console's browser tests drive Debian's Chromium (tests/console.rs); a font to render.
  command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    scripts/apt-update.sh
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  scripts/embedded-toolchain.sh install
  scripts/embedded-toolchain.sh std aarch64-unknown-linux-gnu
  scripts/embedded-toolchain.sh std armv7-unknown-linux-gnueabihf
  # Independent clients in Python (paho-mqtt, boto3, the aws CLI, pytest; cryptography to verify SNS
  # signatures; AWS's device SDK for the shadow client; Playwright to drive Chromium; OpenAPI
  # validators for the admin API's description), in venvs of the
  # project's own: .venv with current releases, .venv-sqs-query with a boto3 that still speaks
  # SQS's query protocol.
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import paho.mqtt, boto3, pytest, cryptography, moto.server, awsiot.iotshadow, playwright.sync_api, openapi_spec_validator, openapi_schema_validator' 2>/dev/null \
      || [ ! -x .venv/bin/aws ]; then
    step "creating .venv with the Python test clients"
    python3 -m venv .venv
    .venv/bin/pip install --quiet -r tests/interop/requirements.txt
  fi
  # MQTT.js, the Node/browser client, pinned by its package-lock.json.
  if [ ! -d tests/interop/mqttjs/node_modules/mqtt ]; then
    step "installing MQTT.js"
    (cd tests/interop/mqttjs && npm ci --silent --no-audit --no-fund)
  fi
  # Schemathesis, property-based checks of the admin API against its OpenAPI description, in a
  # venv of its own (its dependencies pin versions the clients above do not want).
  if [ ! -x .venv-api/bin/st ]; then
    step "creating .venv-api (schemathesis)"
    python3 -m venv .venv-api
    .venv-api/bin/pip install --quiet -r tests/interop/requirements-api.txt
  fi
  if [ ! -x .venv-sqs-query/bin/python ] || ! .venv-sqs-query/bin/python -c 'import boto3, pytest' 2>/dev/null; then
    step "creating .venv-sqs-query (boto3 1.26, query protocol)"
    python3 -m venv .venv-sqs-query
    .venv-sqs-query/bin/pip install --quiet -r tests/interop/requirements-query.txt
  fi
}

if [ "${OUTPOST_SKIP_INSTALL:-0}" != 1 ]; then
  install_packages
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests (workspace, all features)"
# Interop tests with clients we did not write must run here, not skip.
export OUTPOST_REQUIRE_INTEROP=1
cargo test --workspace --all-features
# The test executables (cargo relinks one if a later step asks for it again).
if on_ci; then find target/debug/deps -maxdepth 1 -type f -executable ! -name '*.*' -delete; fi

step "codec tests without optional features (pure no_std API), with and without MQTT 5"
cargo test -p outpost-codec --no-default-features --features v5
cargo test -p outpost-codec --no-default-features --lib

step "outpost-client and its codec: docs without warnings, publishable (cargo package)"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet -p outpost-client -p outpost-codec --no-deps --features outpost-client/mqtt5
cargo package --quiet -p outpost-codec -p outpost-client --allow-dirty

step "no_std cross builds"
scripts/cross-build.sh

step "firmware on emulated Cortex-M4 (QEMU mps2-an386) and RISC-V (QEMU virt) boards against the broker, through a broker kill -9"
scripts/qemu-firmware.sh
free_disk target/cross/thumbv7em-none-eabihf target/cross/thumbv6m-none-eabi \
  target/cross/riscv32imc-unknown-none-elf

# One bounded fuzz run: crate folder, target, seconds, extra corpus folders.
fuzz_run() {
  local dir=$1 target=$2 seconds=$3
  shift 3
  mkdir -p "$dir/fuzz/corpus/$target"
  local log
  log=$(mktemp)
  # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
  (cd "$dir" && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "fuzz/corpus/$target" "$@" \
    -- -max_total_time="$seconds" -print_final_stats=1 > "$log" 2>&1) \
    || { tail -n 60 "$log"; exit 1; }
  grep -E "stat::number_of_executed_units|Done" "$log" || true
  rm -f "$log"
  free_disk "$dir/fuzz/target"
}

if [ "$FUZZ_SECONDS" != 0 ]; then
  if ! command -v cargo-fuzz >/dev/null; then
    # The suite runs everything: a fuzzer that cannot be installed fails the run.
    cargo install cargo-fuzz --locked --quiet || { echo "FAILED: cargo-fuzz could not be installed"; exit 1; }
  fi
  if command -v cargo-fuzz >/dev/null; then
    step "fuzzing the MQTT decoder for ${FUZZ_SECONDS}s"
    # The captured mosquitto traffic seeds the corpus.
    fuzz_run crates/codec decode "$FUZZ_SECONDS" tests/fixtures
    step "fuzzing the subscription and retained trees for $((FUZZ_SECONDS / 2))s"
    fuzz_run crates/mqtt trees "$((FUZZ_SECONDS / 2))"
    step "fuzzing the query-protocol parser for $((FUZZ_SECONDS / 2))s"
    fuzz_run crates/http query "$((FUZZ_SECONDS / 2))"
    step "fuzzing whole HTTP requests (SigV4, query, JSON, REST) for $((FUZZ_SECONDS / 2))s"
    fuzz_run crates/http request "$((FUZZ_SECONDS / 2))" fuzz/seeds/request
  fi
else
  step "fuzzing SKIPPED (OUTPOST_FUZZ_SECONDS=0)"
fi

step "benchmark smoke run (each benchmark once, no timing)"
cargo test -p outpost-benches --benches
benches/sqs-load.sh --smoke
benches/sns-load.sh --smoke
benches/routing-load.sh --smoke
benches/bridge-load.sh --smoke
benches/many-clients.sh --smoke
benches/many-websocket.sh --smoke
benches/shadow-load.sh --smoke

step "ARM gateway builds (aarch64, armv7): cross-built, packaged, run under qemu-user with MQTT and SQS clients"
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  scripts/gateway-smoke.sh "$target"
  # A CI machine's disk is small: the emulated builds are not needed once they passed.
  free_disk "target/cross/$target/debug"
done
# The host half of those builds (build scripts, proc macros: ~1 GB); nothing later uses it.
free_disk target/cross

step "Debian package (release build): dpkg -i, systemd-analyze verify, the installed broker serves MQTT and SQS, purge"
deb=$(scripts/package.sh | tail -n 1)
scripts/package-test.sh "$deb"
free_disk target/release target/debian

# Last: these builds replace target/debug/outpost with feature-reduced ones.
step "cargo features: each alone passes clippy; MQTT-only and SQS-only builds serve real clients"
scripts/feature-builds.sh

step "all tests passed"
