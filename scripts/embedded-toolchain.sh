#!/usr/bin/env bash
# Prepares a cross-compiler for bare-metal targets (thumbv7em-none-eabihf, thumbv6m-none-eabi,
# riscv32imc-unknown-none-elf) without touching the rustup toolchain.
#
# Why this way: the rustup toolchain on our build machines ships no standard library for embedded
# targets and cannot download one. Debian's `rustc-web` compiler together with its library sources can
# build `core` for any target with `-Z build-std=core`. We *extract* the packages (not install them) into
# a cache folder so the host toolchain stays untouched.
#
# The same compiler builds the broker for ARM gateways (scripts/gateway-build.sh): Debian publishes
# its standard library prebuilt for arm64 and armhf, which `std TARGET` extracts beside it.
#
# Usage: source <(scripts/embedded-toolchain.sh env)   # prints the exports for cross builds
#        scripts/embedded-toolchain.sh install          # download + extract only
#        scripts/embedded-toolchain.sh std TARGET       # add Debian's std for a Linux target
set -euo pipefail

SCRIPTS=$(cd "$(dirname "$0")" && pwd)
EMB=${OUTPOST_EMBEDDED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost-embedded}

install() {
  if [ -x "$EMB/root/usr/bin/rustc" ]; then
    return 0
  fi
  echo "embedded-toolchain: extracting Debian rustc-web into $EMB" >&2
  mkdir -p "$EMB/debs"
  (
    cd "$EMB/debs"
    local pkgs=(rustc-web libstd-rust-web-1.96 libstd-rust-web-dev rust-web-src)
    # libllvm of the matching major version; resolve it from rustc-web's dependencies.
    local llvm
    llvm=$(apt-cache depends rustc-web libstd-rust-web-1.96 2>/dev/null | grep -o 'libllvm[0-9]*' | sort -u | head -n 1)
    if ! apt-get download "${pkgs[@]}" "${llvm:-libllvm22}" >&2; then
      # A fresh machine may have no package lists yet.
      "$SCRIPTS/apt-update.sh"
      apt-get download "${pkgs[@]}" "${llvm:-libllvm22}" >&2
    fi
    for f in *.deb; do dpkg -x "$f" "$EMB/root"; done
  )
  "$EMB/root/usr/bin/rustc" --version >&2 2>/dev/null || LD_LIBRARY_PATH=$EMB/root/usr/lib/x86_64-linux-gnu "$EMB/root/usr/bin/rustc" --version >&2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian's packages of `version` for `arch`, taken from the pool beside the host's rustc-web when
# apt has no list for that architecture (a mirror in the middle of a sync served a stale one and a
# CI run died of it). The pool path is the host package's; each file is checked to be a package of
# that name, version and architecture before it is used.
from_pool() {
  local arch=$1 version=$2 uri dir
  shift 2
  uri=$(apt-get --print-uris download "rustc-web=$version" 2>/dev/null | head -n 1 | cut -d"'" -f2)
  if [ -z "$uri" ]; then
    echo "embedded-toolchain: no list names rustc-web $version; cannot fetch Debian's std for $arch" >&2
    exit 1
  fi
  dir=${uri%/*}
  echo "embedded-toolchain: apt has no $arch list with $version; fetching from $dir" >&2
  local pkg file
  for pkg in "$@"; do
    file="${pkg}_${version/:/%3a}_${arch}.deb"
    curl -fsS --retry 3 -o "$file" "$dir/$file"
    if [ "$(dpkg-deb -f "$file" Package)" != "$pkg" ] || [ "$(dpkg-deb -f "$file" Version)" != "$version" ] \
      || [ "$(dpkg-deb -f "$file" Architecture)" != "$arch" ]; then
      echo "embedded-toolchain: $file is not $pkg $version for $arch" >&2
      rm -f "$file"
      exit 1
    fi
  done
}

# Debian's prebuilt standard library for a Linux target, of exactly the compiler's version.
install_std() {
  local target=$1 arch
  case "$target" in
    aarch64-unknown-linux-gnu) arch=arm64 ;;
    armv7-unknown-linux-gnueabihf) arch=armhf ;;
    x86_64-unknown-linux-gnu) return 0 ;;
    *) echo "embedded-toolchain: no Debian std for $target" >&2; exit 2 ;;
  esac
  install
  if [ -d "$EMB/root/usr/lib/rustlib/$target/lib" ]; then
    return 0
  fi
  local version
  version=$(dpkg-deb -f "$EMB"/debs/rustc-web_*.deb Version)
  local major=${version%%+*}
  major=${major%.*}
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    as_root dpkg --add-architecture "$arch"
    "$SCRIPTS/apt-update.sh"
  fi
  echo "embedded-toolchain: extracting Debian's std for $target ($arch, $version)" >&2
  mkdir -p "$EMB/debs-$arch"
  (
    cd "$EMB/debs-$arch"
    if ! apt-get download "libstd-rust-web-dev:$arch=$version" "libstd-rust-web-$major:$arch=$version" >&2; then
      from_pool "$arch" "$version" "libstd-rust-web-dev" "libstd-rust-web-$major"
    fi
    for f in *.deb; do dpkg -x "$f" "$EMB/root"; done
  )
}

case "${1:-env}" in
  install) install ;;
  std) install_std "${2:?usage: $0 std TARGET}" ;;
  env)
    install
    echo "export LD_LIBRARY_PATH=$EMB/root/usr/lib/x86_64-linux-gnu"
    echo "export RUSTC=$EMB/root/usr/bin/rustc"
    echo "export RUSTC_BOOTSTRAP=1"
    ;;
  *) echo "usage: $0 [install|env]" >&2; exit 2 ;;
esac
