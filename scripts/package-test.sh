#!/usr/bin/env bash
# Installs a Debian package built by scripts/package.sh on this machine and checks it as an
# operator would meet it: dpkg installs it, the installed unit passes `systemd-analyze verify`,
# the installed binary runs as the package's user with the packaged configuration and serves real
# MQTT and SQS clients (scripts/smoke.sh), and a purge leaves nothing behind. Needs root (sudo).
#
# Usage: scripts/package-test.sh target/debian/outpost_<version>_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: $0 PACKAGE.deb}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
fail() { echo "FAILED: $*" >&2; exit 1; }

as_root dpkg -i "$deb"
dpkg -s outpost | grep -q '^Status: install ok installed' || fail "dpkg does not list outpost as installed"
for f in /usr/bin/outpost /lib/systemd/system/outpost.service /etc/outpost/outpost.toml; do
  [ -e "$f" ] || fail "$f is not installed"
done
getent passwd outpost >/dev/null || fail "the package did not create its user"
[ "$(stat -c %U /var/lib/outpost)" = outpost ] || fail "/var/lib/outpost is not the service user's"

# Every directive of the installed unit, as systemd reads it; lines about the host's own units
# (no systemd runs in a container) are not ours.
verify=$(systemd-analyze verify /lib/systemd/system/outpost.service 2>&1 || true)
ours=$(grep -i 'outpost' <<<"$verify" | grep -v 'Failed to connect' || true)
[ -z "$ours" ] || fail "systemd-analyze verify: $ours"

# The installed binary, as the unit runs it: its user, its configuration, its data folder.
scripts/smoke.sh --as outpost --data /var/lib/outpost -- /usr/bin/outpost --config /etc/outpost/outpost.toml
[ -n "$(as_root ls -A /var/lib/outpost)" ] || fail "the broker wrote nothing to /var/lib/outpost"

as_root dpkg --purge outpost
[ ! -e /usr/bin/outpost ] && [ ! -e /var/lib/outpost ] && ! getent passwd outpost >/dev/null \
  || fail "dpkg --purge left the binary, the data or the user behind"
echo "package-test: $deb installed, verified, served MQTT and SQS, purged"
