#!/usr/bin/env bash
# Core scaling: the same scenarios with each broker pinned to one core (the load tool on the other)
# and then given both cores (the load tool shares them), Outpost beside rumqttd. Prints a Markdown
# table of delivered msg/s and the two-core/one-core ratio; raw figures in target/scaling-*.json.
# About 3 minutes on a 2-core machine. Needs taskset (util-linux) and what benches/mqtt-bench.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(nproc)" -lt 2 ]; then echo "scaling needs at least 2 cores" >&2; exit 1; fi
scenarios=(p2p fanout flood)
for pin in 0 0-1; do
  for s in "${scenarios[@]}"; do
    benches/mqtt-bench.sh --pin "$pin" --brokers outpost,rumqttd --only "$s" "$@" >/dev/null 2>&1
    cp target/mqtt-bench.json "target/scaling-$pin-$s.json"
  done
done
python3 - "${scenarios[@]}" <<'PY'
import json, sys
rows = {}
for pin in ("0", "0-1"):
    for s in sys.argv[1:]:
        for r in json.load(open(f"target/scaling-{pin}-{s}.json")):
            if r.get("msgs_per_s") and r["scenario"] == s:
                rows[(pin, r["broker"], s, r["qos"], r["payload"])] = r
cases = sorted({k[2:] for k in rows}, key=lambda c: (sys.argv[1:].index(c[0]), c[1], c[2]))
print("| scenario | QoS | payload | Outpost 1 core | Outpost 2 cores | 2/1 | rumqttd 1 core | rumqttd 2 cores | 2/1 | Outpost/rumqttd, 2 cores |")
print("|---|---|---|---|---|---|---|---|---|---|")
def rate(pin, b, c):
    r = rows.get((pin, b) + c)
    if not r:
        return 0, "n/a"
    lost = "" if r["delivered"] >= r["expected"] else f" ({r['expected'] - r['delivered']} lost)"
    return r["msgs_per_s"], f"{r['msgs_per_s']:,.0f}{lost}"
for c in cases:
    o1, o1s = rate("0", "outpost", c); o2, o2s = rate("0-1", "outpost", c)
    r1, r1s = rate("0", "rumqttd", c); r2, r2s = rate("0-1", "rumqttd", c)
    q = lambda a, b: f"{a / b:.2f}×" if a and b else "n/a"
    print(f"| {c[0]} | {c[1]} | {c[2]} B | {o1s} | {o2s} | {q(o2, o1)} | {r1s} | {r2s} | {q(r2, r1)} | {q(o2, r2)} |")
PY
