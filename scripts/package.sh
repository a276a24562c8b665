#!/usr/bin/env bash
# Builds Outpost's Debian package for one architecture and prints its path on the last line.
#
# Usage: scripts/package.sh [--target TARGET] [--binary PATH] [--out DIR]
#   --target  x86_64-unknown-linux-gnu (default), aarch64-unknown-linux-gnu or
#             armv7-unknown-linux-gnueabihf; the last two are cross-built by
#             scripts/gateway-build.sh
#   --binary  package this binary instead of building one (`cargo build --release`)
#   --out     where the .deb goes (default target/debian)
# Install: sudo apt install ./target/debian/outpost_<version>_<arch>.deb
#
# The package holds /usr/bin/outpost, the systemd unit of deploy/outpost.service (run as a system
# user `outpost` that the package creates, instead of a dynamic one, so the data folder it owns
# outlives the unit), the default configuration /etc/outpost/outpost.toml (a conffile: an upgrade
# keeps the operator's edits) with the data in /var/lib/outpost. Plain dpkg-deb: the layout is
# small and fixed, and a packaging tool would be one more thing for a CI machine to build.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
binary=""
out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--target TARGET] [--binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
case "$target" in
  x86_64-unknown-linux-gnu) arch=amd64 ;;
  aarch64-unknown-linux-gnu) arch=arm64 ;;
  armv7-unknown-linux-gnueabihf) arch=armhf ;;
  *) echo "package: unsupported target $target" >&2; exit 2 ;;
esac
if [ -z "$binary" ]; then
  if [ "$arch" = amd64 ]; then
    cargo build --locked --release -p outpost >&2
    binary=${CARGO_TARGET_DIR:-target}/release/outpost
  else
    binary=$(scripts/gateway-build.sh "$target" --release | tail -n 1)
  fi
fi
[ -x "$binary" ] || { echo "package: no binary at $binary" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/bin/outpost"
# The unit as deploy/ ships it, pointed at the packaged binary and its system user.
{
  echo "# Outpost as a systemd service, locked down: the package's system user \`outpost\`, a read-only"
  echo "# system, /var/lib/outpost the only writable place; settings in /etc/outpost/outpost.toml."
  echo "# \`systemctl reload outpost\` re-reads the password, access key and ACL files and the TLS"
  echo "# certificates (SIGHUP) without dropping connections."
  echo
  sed -e '1,/^$/d' \
      -e 's|^ExecStart=/usr/local/bin/outpost|ExecStart=/usr/bin/outpost|' \
      -e 's|^DynamicUser=yes|User=outpost\nGroup=outpost|' \
      deploy/outpost.service
} > "$root/unit"
grep -q '^ExecStart=/usr/bin/outpost ' "$root/unit" && grep -q '^User=outpost$' "$root/unit" \
  || { echo "package: deploy/outpost.service changed shape; update scripts/package.sh" >&2; exit 1; }
install -D -m 0644 "$root/unit" "$root/lib/systemd/system/outpost.service"
rm "$root/unit"
sed -e 's|^data_dir = .*|data_dir = "/var/lib/outpost"|' outpost.example.toml > "$root/outpost.toml"
install -D -m 0640 "$root/outpost.toml" "$root/etc/outpost/outpost.toml"
rm "$root/outpost.toml"
install -D -m 0644 README.md "$root/usr/share/doc/outpost/README.md"
install -D -m 0644 LICENSE "$root/usr/share/doc/outpost/copyright"
install -d -m 0755 "$root/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$root/DEBIAN/"
echo /etc/outpost/outpost.toml > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: outpost
Version: $version
Architecture: $arch
Maintainer: Outpost developers <outpost@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.31), passwd
Section: net
Priority: optional
Homepage: https://github.com/outpost-broker/outpost
Description: persistent message broker for the edge (MQTT, SQS, SNS, EventBridge)
 One small broker for a gateway box: MQTT 3.1.1 and 5 over TCP, WebSocket
 and TLS, and the HTTP APIs of SQS, SNS, EventBridge and AWS IoT data that
 the AWS SDKs and CLI use unchanged, on one persistent store.
EOF
mkdir -p "$out"
deb="$out/outpost_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >&2
echo "$deb"
