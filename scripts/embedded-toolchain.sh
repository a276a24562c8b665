#!/usr/bin/env bash
# Prepares a cross-compiler for bare-metal targets (thumbv7em-none-eabihf, thumbv6m-none-eabi,
# riscv32imc-unknown-none-elf) without touching the rustup toolchain.
#
# Why this way: the rustup toolchain on our build machines ships no standard library for embedded
# targets and cannot download one. Debian's `rustc-web` compiler together with its library sources can
# build `core` for any target with `-Z build-std=core`. We *extract* the packages (not install them) into
# a cache folder so the host toolchain stays untouched.
#
# Usage: source <(scripts/embedded-toolchain.sh env)   # prints the exports for cross builds
#        scripts/embedded-toolchain.sh install          # download + extract only
set -euo pipefail

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
      if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
      apt-get download "${pkgs[@]}" "${llvm:-libllvm22}" >&2
    fi
    for f in *.deb; do dpkg -x "$f" "$EMB/root"; done
  )
  "$EMB/root/usr/bin/rustc" --version >&2 2>/dev/null || LD_LIBRARY_PATH=$EMB/root/usr/lib/x86_64-linux-gnu "$EMB/root/usr/bin/rustc" --version >&2
}

case "${1:-env}" in
  install) install ;;
  env)
    install
    echo "export LD_LIBRARY_PATH=$EMB/root/usr/lib/x86_64-linux-gnu"
    echo "export RUSTC=$EMB/root/usr/bin/rustc"
    echo "export RUSTC_BOOTSTRAP=1"
    ;;
  *) echo "usage: $0 [install|env]" >&2; exit 2 ;;
esac
