#!/usr/bin/env python3
"""Markdown tables for the store and metadata benchmarks, as ratios against the peers of the same run.

usage: store_table.py CRITERION_DIR
"""
import json
import os
import sys


def mean_ns(path):
    with open(os.path.join(path, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]


def rate(ns, per_iter=1):
    return per_iter * 1e9 / ns


def fmt_rate(r):
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else (f"{r / 1e3:.1f} k/s" if r >= 1e3 else f"{r:.0f} /s")


def appends(root):
    print("| payload | writers | Outpost appends/s (threads) | Outpost appends/s (async tasks) | MB/s (best) | raw write+fdatasync | sled | redb | best ÷ raw | best ÷ sled | best ÷ redb |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in (64, 1024, 65536):
        g = os.path.join(root, f"durable_append_{size}B")
        if not os.path.isdir(g):
            continue
        for w in ("1", "8", "64"):
            r = {}
            for impl in ("outpost", "outpost-async", "raw-write-fdatasync", "sled", "redb"):
                p = os.path.join(g, impl, w)
                if os.path.isdir(p):
                    r[impl] = rate(mean_ns(p))
            if "outpost" not in r:
                continue
            o = max(r["outpost"], r.get("outpost-async", 0))
            mbs = o * size / 1e6
            cells = [fmt_rate(r.get(k, 0)) for k in ("raw-write-fdatasync", "sled", "redb")]
            ratios = [f"{o / r[k]:.2f}×" if r.get(k) else "–" for k in ("raw-write-fdatasync", "sled", "redb")]
            print(f"| {size:,} B | {w} | {fmt_rate(r['outpost'])} | {fmt_rate(r.get('outpost-async', 0))} | {mbs:.1f} | {' | '.join(cells)} | {' | '.join(ratios)} |")


def simple(root, group):
    g = os.path.join(root, group)
    if not os.path.isdir(g):
        return
    print(f"\n| {group} | time per iteration |")
    print("|---|---|")
    for impl in sorted(os.listdir(g)):
        p = os.path.join(g, impl)
        if impl == "report" or not os.path.isdir(os.path.join(p, "new")):
            continue
        ns = mean_ns(p)
        shown = f"{ns / 1e6:.1f} ms" if ns > 1e6 else (f"{ns / 1e3:.2f} µs" if ns > 1e3 else f"{ns:.0f} ns")
        print(f"| {impl} | {shown} |")


def metadata(root):
    g = os.path.join(root, "metadata")
    if not os.path.isdir(g):
        return
    ops = sorted({d.rsplit("_", 1)[0] for d in os.listdir(g) if "_" in d})
    print("\n| operation | sled 0.34 | redb | redb ÷ sled (speed) |")
    print("|---|---|---|---|")
    show = lambda ns: f"{ns / 1e3:.1f} µs" if ns > 1e3 else f"{ns:.0f} ns"
    for op in ops:
        cells = {}
        for engine in ("sled", "redb"):
            p = os.path.join(g, f"{op}_{engine}")
            if os.path.isdir(p):
                cells[engine] = mean_ns(p)
        if len(cells) == 2:
            print(f"| {op} | {show(cells['sled'])} | {show(cells['redb'])} | {cells['sled'] / cells['redb']:.2f}× |")


if __name__ == "__main__":
    root = sys.argv[1]
    appends(root)
    simple(root, "read")
    simple(root, "recovery")
    metadata(root)
