#!/usr/bin/env bash
# Shadow updates against plain QoS 1 publishes, same broker, same run (issue 30): 8 clients doing
# request → answer round trips, one at a time each (benches/src/bin/shadow-load.rs). A shadow
# update's answer (`update/accepted`) comes once the change is fsynced; the plain publish goes to
# a clean-session subscriber (nothing stored). Loss is counted for both. Outpost only: no peer
# broker has a shadow service (AWS IoT Core is the reference, not a local process).
# usage: benches/shadow-load.sh [SECONDS]   (default 10; writes target/shadow-load.json and the
#        shadows section of benches/README.md)
#        benches/shadow-load.sh --smoke      (CI: debug build, 1 s, no README)
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0
if [ "${1:-}" = --smoke ]; then
  smoke=1 seconds=1 bin=target/debug
  cargo build --quiet --all-features -p outpost -p outpost-benches --bin outpost --bin shadow-load
else
  seconds=${1:-10} bin=target/release
  cargo build --quiet --release -p outpost -p outpost-benches --bin outpost --bin shadow-load
fi
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin/outpost" --data-dir "$data" --mqtt-listen 127.0.0.1:19483 --ws-listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --log warn >/dev/null &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/19483") 2>/dev/null && break
  sleep 0.1
done
json=$("$bin/shadow-load" --addr 127.0.0.1:19483 --clients 8 --seconds "$seconds")
mkdir -p target
echo "$json" >target/shadow-load.json
table=$(python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
p, s = r["publish"], r["shadow"]
print(f"| {r['clients']} clients, {r['seconds']} s each | QoS 1 publish → subscriber | shadow update → `update/accepted` | ratio |")
print("|---|---:|---:|---:|")
print(f"| round trips/s | {p['per_second']:,.0f} | {s['per_second']:,.0f} | {s['per_second'] / max(p['per_second'], 1):.2f}× |")
print(f"| p50 / p99 (ms) | {p['p50_ms']} / {p['p99_ms']} | {s['p50_ms']} / {s['p99_ms']} | |")
print(f"| lost | {p['lost']} | {s['lost']} | |")
if p["lost"] or s["lost"] or not s["round_trips"] or not p["round_trips"]:
    print("FAILED: lost or no round trips", file=sys.stderr)
    sys.exit(1)
PY
)
echo "$table"
[ "$smoke" = 1 ] && exit 0
section=$(cat <<MD
<!-- shadows:begin (written by benches/shadow-load.sh; do not edit by hand) -->
Run $(date -u +%Y-%m-%d) on $(nproc) cores, loopback, release build: \`benches/shadow-load.sh $seconds\`.

$table
<!-- shadows:end -->
MD
)
python3 - "$section" <<'PY'
import re, sys
path = "benches/README.md"
text = open(path).read()
section = sys.argv[1]
if "<!-- shadows:begin" in text:
    text = re.sub(r"<!-- shadows:begin.*?<!-- shadows:end -->", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n## Device shadows: updates against plain QoS 1 publishes (issue 30)\n\n" + section + "\n"
open(path, "w").write(text)
PY
