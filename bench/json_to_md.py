#!/usr/bin/env python3
"""Renders `clquant bench --json-out` files as the markdown tables of bench/RESULTS.md."""
import json
import sys


def main(paths):
    for path in paths:
        with open(path) as f:
            j = json.load(f)
        d = j["device"]
        print(f"Device: {d['device']} ({d['platform']}, driver {d['driver_version']}); "
              f"copy bandwidth {j['copy_gbps']:.1f} GB/s\n")
        print("| case | variant | min ms | median ms | max ms | wall ms | GB/s | % copy | TFLOP/s | baseline ms | "
              "vs baseline |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in j["rows"]:
            base = f"{r['baseline_ms']:.4f}" if r["baseline_ms"] > 0 else "-"
            vs = f"{r['speedup_vs_baseline']:.2f}x" if r["baseline_ms"] > 0 else "-"
            # Files written before min/max (or wall) were recorded show "-" there.
            lo = f"{r['min_ms']:.4f}" if "min_ms" in r else "-"
            hi = f"{r['max_ms']:.4f}" if "max_ms" in r else "-"
            wall = f"{r['wall_ms']:.4f}" if r.get("wall_ms", 0) > 0 else "-"
            print(f"| {r['case']} | {r['variant']} | {lo} | {r['median_ms']:.4f} | {hi} | {wall} | {r['gbps']:.1f} | "
                  f"{r['pct_copy']:.1f}% | {r['tflops']:.3f} | {base} | {vs} |")
        names = sorted({r["baseline"] for r in j["rows"] if r["baseline"]})
        if names:
            print(f"\nBaseline: {', '.join(names)}.")
        print()
        for r in j["rows"]:
            if not r.get("breakdown"):
                continue
            busy = sum(b["ms"] for b in r["breakdown"])
            print(f"{r['case']}: {len(r['breakdown'])} launches, {busy * 1e3:.1f} us busy of "
                  f"{r['median_ms'] * 1e3:.1f} us device\n")
            print("| launch | start us | us |")
            print("| --- | ---: | ---: |")
            for b in r["breakdown"]:
                print(f"| {b['name']} | {b['start_ms'] * 1e3:.1f} | {b['ms'] * 1e3:.1f} |")
            print()


if __name__ == "__main__":
    main(sys.argv[1:])
