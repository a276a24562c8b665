#!/usr/bin/env bash
# `apt-get update` that outlasts a mirror in the middle of a sync: Debian's mirrors publish new
# index files one after another, and a machine that asks at that moment gets "File has unexpected
# size (…). Mirror sync in progress?" and exit 100 (a CI run died of it). Tries again a few times,
# with apt's own retries for each download. A list that still cannot be fetched is left out with a
# warning rather than stopping everything: apt has then updated every other list, and what needs the
# missing one fails on its own, where it can fall back (scripts/embedded-toolchain.sh fetches
# Debian's std for a foreign architecture from the pool directly).
set -uo pipefail
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
for attempt in 1 2 3; do
  if as_root apt-get -o Acquire::Retries=3 update -qq; then
    exit 0
  fi
  if [ "$attempt" -lt 3 ]; then
    echo "apt-update: attempt $attempt failed; again in $((attempt * 8)) s" >&2
    sleep $((attempt * 8))
  fi
done
echo "apt-update: WARNING: some package lists could not be fetched; going on with the others" >&2
exit 0
