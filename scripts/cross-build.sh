#!/usr/bin/env bash
# Builds the no_std crates for the microcontroller targets we support, with the toolchain prepared by
# scripts/embedded-toolchain.sh. A separate target folder keeps host builds untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/embedded-toolchain.sh env)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/cross
for target in thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
  echo "cross: outpost-codec and outpost-client for $target"
  cargo build --quiet --release -Z build-std=core --target "$target" -p outpost-codec -p outpost-client
  echo "cross: outpost-client with MQTT 5 for $target"
  cargo build --quiet --release -Z build-std=core --target "$target" -p outpost-client --features mqtt5
done
echo "cross: outpost-client with defmt logging for thumbv7em-none-eabihf"
cargo build --quiet --release -Z build-std=core --target thumbv7em-none-eabihf -p outpost-client --features defmt
echo "cross: the embassy-net example (async client over embassy-net TCP, NUCLEO-F767ZI) for thumbv7em-none-eabihf"
linker=$(env -u RUSTC -u LD_LIBRARY_PATH -u RUSTC_BOOTSTRAP rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld
(cd firmware-client/examples/embassy-net && \
  CARGO_TARGET_THUMBV7EM_NONE_EABIHF_LINKER=$linker cargo build --quiet --release -Z build-std=core)
