#!/usr/bin/env python3
"""Markdown tables from target/mqtt-bench.json: each figure with Outpost's ratio to each peer.
usage: mqtt_table.py JSON [OUTPOST_BYTES MOSQUITTO_BYTES RUMQTTD_BYTES]"""
import json
import sys

rows = json.load(open(sys.argv[1]))
brokers = ["outpost", "mosquitto", "rumqttd"]
peers = brokers[1:]


def find(broker, scenario, qos=None, payload=None):
    for r in rows:
        if r["broker"] == broker and r["scenario"] == scenario and \
                (qos is None or r.get("qos") == qos) and (payload is None or r.get("payload") == payload):
            return r
    return None


def ratio(a, b, higher_better=True):
    if not a or not b:
        return "n/a"
    return f"{(a / b if higher_better else b / a):.2f}×"


def cell(r, key="msgs_per_s"):
    if not r or not r.get("delivered"):
        return "failed"
    lost = "" if r["delivered"] >= r["expected"] else f" ({r['delivered']}/{r['expected']})"
    return f"{r[key]:,.0f}{lost}"


print("| scenario | QoS | payload | " + " | ".join(f"{b} msg/s" for b in brokers) +
      " | vs mosquitto | vs rumqttd |")
print("|---|---|---|" + "---|" * (len(brokers) + 2))
cases = [("p2p", 0, 16), ("p2p", 1, 16), ("p2p", 0, 1024), ("p2p", 1, 1024), ("fanout", 0, 16),
         ("fanout", 1, 16), ("fanin-shared", 1, 16), ("p2p-rate", 1, 16)]
for s, q, p in cases:
    rs = [find(b, s, q, p) for b in brokers]
    val = [r["msgs_per_s"] if r and r.get("delivered") else 0 for r in rs]
    print(f"| {s} | {q} | {p} B | " + " | ".join(cell(r) for r in rs) + " | " +
          " | ".join(ratio(val[0], v) for v in val[1:]) + " |")

print()
print("| latency (ms) | " + " | ".join(f"{b} p50 / p99 / p99.9" for b in brokers) +
      " | p99 vs mosquitto | p99 vs rumqttd |")
print("|---|" + "---|" * (len(brokers) + 2))
for s, q, p in cases:
    rs = [find(b, s, q, p) for b in brokers]
    fmt = lambda r: f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['p999_ms']:.2f}" if r and r.get("delivered") else "n/a"
    p99 = [r["p99_ms"] if r and r.get("delivered") else 0 for r in rs]
    print(f"| {s} QoS {q} {p} B | " + " | ".join(fmt(r) for r in rs) + " | " +
          " | ".join(ratio(p99[0], v, higher_better=False) for v in p99[1:]) + " |")

print()
print("| persistent session (QoS 1, offline, 16 B) | " + " | ".join(brokers) + " | vs mosquitto | vs rumqttd |")
print("|---|" + "---|" * (len(brokers) + 2))
for key, label in (("publish_msgs_per_s", "publish msg/s (acknowledged)"), ("drain_msgs_per_s", "drain msg/s on reconnect")):
    vals = []
    for b in brokers:
        r = find(b, "persistent")
        vals.append(r["extra"][key] if r and r.get("extra") else 0)
    drained = [find(b, "persistent") for b in brokers]
    cells = [f"{v:,.0f}" + (f" ({r['extra']['drained']}/{r['expected']})" if key.startswith("drain") and r and r["extra"]["drained"] < r["expected"] else "") for v, r in zip(vals, drained)]
    print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratio(vals[0], v) for v in vals[1:]) + " |")

print()
cr = [find(b, "connect-rate") for b in brokers]
print("| new connections (1,000/s for 5 s) | " + " | ".join(brokers) + " | p99 vs mosquitto | p99 vs rumqttd |")
print("|---|" + "---|" * (len(brokers) + 2))
print("| CONNACK latency p50 / p99 (ms) | " + " | ".join(f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r and r.get("delivered") else "n/a" for r in cr) + " | " +
      " | ".join(ratio(cr[0]["p99_ms"] if cr[0] and cr[0].get("delivered") else 0, r["p99_ms"] if r and r.get("delivered") else 0, higher_better=False) for r in cr[1:]) + " |")

print()
nb = [find(b, "neighbour") for b in brokers]
print("| noisy neighbour: calm QoS 1 round trips beside a QoS 0 flood | " + " | ".join(brokers) + " |")
print("|---|" + "---|" * len(brokers))
print("| p99 alone / beside the flood (ms) | " + " | ".join(
    f"{r['extra']['p99_alone_ms']:.2f} / {r['extra']['p99_beside_flood_ms']:.2f}" if r and r.get("extra") else "n/a"
    for r in nb) + " |")
print("| slowdown (p99 beside / alone) | " + " | ".join(
    f"{r['extra']['ratio']:.1f}×" if r and r.get("extra") else "n/a" for r in nb) + " |")

print()
print("| offline persistent sessions (QoS 1, 1 KiB) | " + " | ".join(f"{b} msg/s" for b in brokers) + " | " + " | ".join(f"{b} bytes written/msg" for b in brokers) + " |")
print("|---|" + "---|" * (2 * len(brokers)))
for n in (1, 10, 100):
    rs = [find(b, f"persistent-fan-{n}") for b in brokers]
    rate = [f"{r['extra']['publish_msgs_per_s']:,.0f}" if r else "n/a" for r in rs]
    wb = [f"{r['extra']['bytes_written_per_message']:,.0f}" if r else "n/a" for r in rs]
    print(f"| {n} session{'s' if n > 1 else ''} | " + " | ".join(rate) + " | " + " | ".join(wb) + " |")

print()
print("| long flood (10 → 10 pairs, QoS 1, 64 B, 100 in flight each) | " + " | ".join(brokers) + " | vs mosquitto | vs rumqttd |")
print("|---|" + "---|" * (len(brokers) + 2))
fl = [find(b, "flood") for b in brokers]
rate = [r["msgs_per_s"] if r and r.get("delivered") else 0 for r in fl]
print("| delivered msg/s | " + " | ".join(f"{v:,.0f}" for v in rate) + " | " + " | ".join(ratio(rate[0], v) for v in rate[1:]) + " |")
print("| acknowledged | " + " | ".join(f"{r['extra']['acknowledged']:,}" if r else "n/a" for r in fl) + " | | |")
print("| acknowledged and never delivered | " + " | ".join(f"{r['extra']['lost']:,}" if r else "n/a" for r in fl) + " | | |")
print("| p99 latency (ms) | " + " | ".join(f"{r['p99_ms']:.1f}" if r and r.get("delivered") else "n/a" for r in fl) + " | | |")

print()
print("| footprint | " + " | ".join(brokers) + " | vs mosquitto | vs rumqttd |")
print("|---|" + "---|" * (len(brokers) + 2))
idle = [(find(b, "idle-rss") or {}).get("rss_kib", 0) for b in brokers]
print("| idle RSS (KiB) | " + " | ".join(f"{v:,}" for v in idle) + " | " + " | ".join(ratio(idle[0], v, False) for v in idle[1:]) + " |")
conn = [find(b, "idle-10k") for b in brokers]
per = [r["extra"]["bytes_per_connection"] if r else 0 for r in conn]
print("| RSS with 10k idle connections (KiB) | " + " | ".join(f"{r['extra']['rss_after_kib']:,} ({r['delivered']} open)" if r else "n/a" for r in conn) + " | | |")
print("| bytes per idle connection | " + " | ".join(f"{v:,.0f}" for v in per) + " | " + " | ".join(ratio(per[0], v, False) for v in per[1:]) + " |")
peak = [max((r.get("peak_rss_kib", 0) for r in rows if r["broker"] == b), default=0) for b in brokers]
print("| peak RSS under load (KiB) | " + " | ".join(f"{v:,}" for v in peak) + " | " + " | ".join(ratio(peak[0], v, False) for v in peak[1:]) + " |")
if len(sys.argv) >= 5:
    size = [int(x) for x in sys.argv[2:5]]
    print("| binary size (bytes) | " + " | ".join(f"{v:,}" for v in size) + " | " + " | ".join(ratio(size[0], v, False) for v in size[1:]) + " |")
