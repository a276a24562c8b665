#!/usr/bin/env python3
"""Turns criterion's results into a Markdown table with ratios against the peer of each group.

usage: criterion_table.py CRITERION_DIR GROUP_PREFIX PEER
Prints one row per (group, size): the peer's time and, for every other implementation, its time and
the speed-up against the peer (peer time / our time; > 1 means we are faster).
"""
import json
import os
import sys


def mean_ns(path):
    with open(os.path.join(path, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def main():
    root, prefix, peer = sys.argv[1], sys.argv[2], sys.argv[3]
    groups = sorted(g for g in os.listdir(root) if g.startswith(prefix))
    print(f"| benchmark | payload | {peer} | Outpost | time | speed-up vs {peer} |")
    print("|---|---|---|---|---|---|")
    for g in groups:
        impls = sorted(i for i in os.listdir(os.path.join(root, g)) if i != "report")
        if peer not in impls:
            continue
        sizes = sorted((s for s in os.listdir(os.path.join(root, g, peer)) if s.isdigit()), key=int)
        for size in sizes:
            base = mean_ns(os.path.join(root, g, peer, size))
            for impl in impls:
                if impl == peer or not os.path.isdir(os.path.join(root, g, impl, size)):
                    continue
                ours = mean_ns(os.path.join(root, g, impl, size))
                print(f"| {g} | {int(size):,} B | {fmt(base)} | {impl} | {fmt(ours)} | {base / ours:.2f}× |")


if __name__ == "__main__":
    main()
