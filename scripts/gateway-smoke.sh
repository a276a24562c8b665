#!/usr/bin/env bash
# An ARM gateway build, checked on this x86_64 machine: cross-builds the broker for TARGET
# (scripts/gateway-build.sh), packages it (scripts/package.sh), takes the binary back out of the
# package and runs it under qemu-user against real MQTT and SQS clients (scripts/smoke.sh).
#
# Usage: scripts/gateway-smoke.sh TARGET [cargo build options...]
#   e.g. scripts/gateway-smoke.sh armv7-unknown-linux-gnueabihf --release
# CI builds without --release (the same code, a third of the build time); a package for a gateway
# is built with scripts/package.sh --target TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: $0 TARGET [cargo build options...]}
shift
case "$target" in
  aarch64-unknown-linux-gnu) qemu=qemu-aarch64 sysroot=/usr/aarch64-linux-gnu ;;
  armv7-unknown-linux-gnueabihf) qemu=qemu-arm sysroot=/usr/arm-linux-gnueabihf ;;
  *) echo "gateway-smoke: unsupported target $target" >&2; exit 2 ;;
esac
command -v "$qemu" >/dev/null || { echo "FAILED: $qemu is missing (Debian package qemu-user)" >&2; exit 1; }

binary=$(scripts/gateway-build.sh "$target" "$@" | tail -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb=$(scripts/package.sh --target "$target" --binary "$binary" --out "$work" | tail -n 1)
dpkg-deb -x "$deb" "$work/root"
machine=$(readelf -h "$work/root/usr/bin/outpost" | sed -n 's/^ *Machine: *//p')
case "$target:$machine" in
  aarch64-*:AArch64 | armv7-*:ARM) ;;
  *) echo "FAILED: the packaged binary is for '$machine', not $target" >&2; exit 1 ;;
esac
echo "gateway-smoke: $(basename "$deb") ($(du -h "$deb" | cut -f1)), $machine binary of $(stat -c %s "$binary") bytes"
scripts/smoke.sh -- "$qemu" -L "$sysroot" "$work/root/usr/bin/outpost" --config "$work/root/etc/outpost/outpost.toml"
