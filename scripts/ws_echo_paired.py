#!/usr/bin/env python3
"""Paired A/B run of the `ws_echo` bench: two bench binaries, run alternately, one bench run each.

Usage: scripts/ws_echo_paired.py BASE_BIN NEW_BIN [PAIRS=21]

Build each binary with `cargo bench --no-run -p moorline --bench ws_echo` at the two commits (the
path is printed as "Executable benches/ws_echo.rs (...)"); to compare with a commit older than the
bench, copy today's `benches/ws_echo.rs` there (and its `libc` dev-dependency). Every bench run
reports moorline's ratios to the best peer measured in the same run (`WS_ECHO_JSON=1`); this script
pairs the runs (base, new, new, base, ...: the order flips every pair so drift hits both alike) and
prints, per row, each side's median ratio and the median over pairs of new-ratio / base-ratio.
1.00 = unchanged; for msg/s above 1 is better, for CPU and latency below 1 is better. The bench's
environment knobs (WS_ECHO_ONLY, WS_ECHO_SERVER, WS_ECHO_CLIENTS, ...) pass through.
"""
import json
import os
import statistics
import subprocess
import sys

FIGURES = {"throughput": ["msg_s_ratio", "cpu_ratio"], "latency": ["p50_ratio", "p99_ratio", "p999_ratio"]}


def run(binary):
    env = dict(os.environ, WS_ECHO_RUNS="1", WS_ECHO_JSON="1")
    out = subprocess.run([binary, "--bench"], env=env, capture_output=True, text=True, timeout=900).stdout
    rows = {}
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line.replace("NaN", "null"))
        if not r["client"].startswith("moorline"):
            continue
        for fig in FIGURES[r["kind"]]:
            if r.get(fig) is not None:
                rows[f"{r['client']:<18} {r['kind']:<10} {r['server']:<9} {r['size']:>5} B {fig}"] = r[fig]
    return rows


def main():
    base, new = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 21
    results = []
    for i in range(pairs):
        order = [(0, base), (1, new)] if i % 2 == 0 else [(1, new), (0, base)]
        got = {}
        for side, binary in order:
            got[side] = run(binary)
        results.append(got)
        print(f"pair {i + 1}/{pairs} done", file=sys.stderr)
    keys = [k for k in results[0][0] if all(k in r[0] and k in r[1] for r in results)]
    print(f"| row ({pairs} pairs) | base vs best peer | new vs best peer | new / base (median of pairs) |")
    print("|---|---:|---:|---:|")
    for k in keys:
        b = [r[0][k] for r in results]
        n = [r[1][k] for r in results]
        q = [y / x for x, y in zip(b, n) if x]
        print(f"| {k} | {statistics.median(b):.3f}x | {statistics.median(n):.3f}x | {statistics.median(q):.3f} |")


if __name__ == "__main__":
    main()
