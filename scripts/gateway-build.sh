#!/usr/bin/env bash
# Cross-builds the broker for an ARM Linux gateway (a Raspberry Pi, an industrial ARM PC, a router)
# from an x86_64 Debian machine, and prints the binary's path on the last line.
#
# Usage: scripts/gateway-build.sh TARGET [cargo build options...]
#   TARGET: aarch64-unknown-linux-gnu (64-bit Raspberry Pi OS, arm64 Debian/Ubuntu)
#           armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS, armhf)
#   e.g. scripts/gateway-build.sh aarch64-unknown-linux-gnu --release
#
# Why this way (docs/gateways.md): the rustup toolchain here cannot download a standard library
# for another target, but Debian publishes `libstd-rust-web-dev` prebuilt for arm64 and armhf,
# matching its `rustc-web` compiler (the one scripts/embedded-toolchain.sh extracts for the
# firmware builds). Debian's cross gcc links the result and compiles `ring`'s C and assembly.
# Builds go to target/cross, beside the firmware builds of the same compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: $0 TARGET [cargo build options...]}
shift
case "$target" in
  aarch64-unknown-linux-gnu) gcc=aarch64-linux-gnu arch=arm64 ;;
  armv7-unknown-linux-gnueabihf) gcc=arm-linux-gnueabihf arch=armhf ;;
  *) echo "gateway-build: unsupported target $target" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
if ! command -v "$gcc-gcc" >/dev/null; then
  echo "gateway-build: installing Debian's cross compiler gcc-$gcc" >&2
  scripts/apt-update.sh
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "gcc-$gcc" "libc6-dev-$arch-cross" >&2
fi
scripts/embedded-toolchain.sh std "$target"
eval "$(scripts/embedded-toolchain.sh env)"
# Stable features only: the Debian compiler must not accept nightly ones in the broker's build.
unset RUSTC_BOOTSTRAP
upper=$(tr 'a-z-' 'A-Z_' <<<"$target")
export "CARGO_TARGET_${upper}_LINKER=$gcc-gcc"
export "CC_${target//-/_}=$gcc-gcc" "AR_${target//-/_}=$gcc-ar"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/cross

profile=debug
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --release) profile=release ;;
    --profile) profile=${args[$((i + 1))]} ;;
    --profile=*) profile=${args[$i]#--profile=} ;;
  esac
done
[ "$profile" = dev ] && profile=debug
cargo build --locked -p outpost --target "$target" "$@" >&2
echo "$CARGO_TARGET_DIR/$target/$profile/outpost"
