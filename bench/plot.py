#!/usr/bin/env python3
"""Draws `clquant bench --json-out FILE` results: achieved GB/s and TFLOP/s against M, one line
per weight shape, with the measured copy bandwidth as the memory roof. One picture per op.

    python3 bench/plot.py results.json [more.json ...] --out plots/   # writes plots/<op>.png

Needs matplotlib (Debian: python3-matplotlib). No compute peak is drawn: clquant measures the
copy bandwidth but not a device's peak TFLOP/s, and a datasheet number would not be same-run.
"""
import argparse
import json
import pathlib
import re
import sys
from collections import defaultdict


def load(paths):
    runs = []
    for p in paths:
        j = json.loads(pathlib.Path(p).read_text())
        runs.append(j)
    return runs


def series(rows):
    """{op: {shape label: [(M, gbps, tflops, min_ms, max_ms, median_ms)]}}"""
    out = defaultdict(lambda: defaultdict(list))
    for r in rows:
        shape = re.sub(r"\s*[MT]=\d+", "", r["case"]).split(" (")[0].strip() or r["op"]
        out[r["op"]][shape].append((r["M"], r["gbps"], r["tflops"], r.get("min_ms", 0), r.get("max_ms", 0),
                                    r["median_ms"]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="files written by clquant bench --json-out")
    ap.add_argument("--out", default=".", help="folder for the <op>.png files (default: .)")
    a = ap.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/plot.py needs matplotlib (apt-get install python3-matplotlib)", file=sys.stderr)
        return 2
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run in load(a.json):
        dev = run.get("device", {}).get("device", "device")
        copy = run.get("copy_gbps", 0)
        for op, shapes in series(run["rows"]).items():
            fig, (ax_bw, ax_fl) = plt.subplots(1, 2, figsize=(12, 4.5))
            for shape, pts in sorted(shapes.items()):
                pts.sort()
                ms = [p[0] for p in pts]
                ax_bw.plot(ms, [p[1] for p in pts], marker="o", label=shape)
                # The min..max spread of the repetitions, as error bars on the median's TFLOP/s.
                tf = [p[2] for p in pts]
                lo = [t * p[5] / p[4] if p[4] else t for t, p in zip(tf, pts)]
                hi = [t * p[5] / p[3] if p[3] else t for t, p in zip(tf, pts)]
                ax_fl.errorbar(ms, tf, yerr=[[t - l for t, l in zip(tf, lo)], [h - t for t, h in zip(tf, hi)]],
                               marker="o", capsize=3, label=shape)
            if copy:
                ax_bw.axhline(copy, color="k", linestyle="--", label=f"measured copy {copy:.0f} GB/s")
            for ax, what in ((ax_bw, "achieved GB/s"), (ax_fl, "TFLOP/s (bars: min..max of the repetitions)")):
                ax.set_xscale("log", base=2)
                ax.set_xlabel("M (rows / tokens)")
                ax.set_ylabel(what)
                ax.grid(True, which="both", alpha=0.3)
            ax_bw.legend(fontsize=7)
            fig.suptitle(f"clquant {op} on {dev}")
            fig.tight_layout()
            path = out / f"{op}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    for p in written:
        print(p)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
