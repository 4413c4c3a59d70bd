#!/usr/bin/env python3
"""Paired A/B run of the `ws_echo` bench: two bench binaries, run alternately, one bench run each.

Usage: scripts/ws_echo_paired.py BASE_BIN NEW_BIN [PAIRS=21]

Build each binary with `cargo bench --no-run -p moorline --bench ws_echo` at the two commits (the
path is printed as "Executable benches/ws_echo.rs (...)"). Every bench run reports moorline's ratio
to the best peer measured in the same run; this script pairs the runs (base, new, base, new, ...,
the order flipped every pair so drift hits both alike) and prints, per row, the median over pairs of
new-ratio / base-ratio, and the median of each side's ratio. 1.00 = unchanged.
"""
import os
import re
import statistics
import subprocess
import sys


def run(binary):
    env = dict(os.environ, WS_ECHO_RUNS="1")
    out = subprocess.run([binary, "--bench"], env=env, capture_output=True, text=True, timeout=600).stdout
    rows, section = {}, None
    for line in out.splitlines():
        if line.startswith("throughput, ") or line.startswith("round-trip"):
            section = line.split(",")[0] + " " + line.split(",")[1].strip().split(" ")[0]
            if line.startswith("round-trip"):
                section = "latency"
            if "HTTP/2" in line or "RFC 8441" in line:
                section += " h2"
            continue
        m = re.match(r"\| (moorline[^|]*?) \|(.*)\|\s*$", line)
        if m and section:
            cells = [c.strip() for c in m.group(2).split("|")]
            ratios = [float(c[:-1]) for c in cells if c.endswith("x")]
            name = m.group(1).strip()
            if section == "latency" and len(ratios) >= 2:
                rows[f"{name} p50"] = ratios[0]
                rows[f"{name} p99"] = ratios[1]
            elif ratios:
                rows[f"{name} {section}"] = ratios[-1]
    return rows


def main():
    base, new = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 21
    per = {}
    for i in range(pairs):
        order = [(base, "base"), (new, "new")] if i % 2 == 0 else [(new, "new"), (base, "base")]
        got = {label: run(binary) for binary, label in order}
        for key in set(got["base"]) & set(got["new"]):
            per.setdefault(key, []).append((got["base"][key], got["new"][key]))
        print(f"pair {i + 1}/{pairs} done", file=sys.stderr)
    print(f"| row ({pairs} pairs) | base vs best peer | new vs best peer | new / base (median of pairs) |")
    print("|---|---:|---:|---:|")
    for key in sorted(per):
        b = statistics.median(x for x, _ in per[key])
        n = statistics.median(y for _, y in per[key])
        r = statistics.median(y / x for x, y in per[key])
        print(f"| {key} | {b:.3f}x | {n:.3f}x | {r:.3f} |")


if __name__ == "__main__":
    main()
