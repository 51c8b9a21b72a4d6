"""bench/plot.py on a small JSON of the shape `clquant bench --json-out` writes."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("matplotlib")


def test_plot_writes_one_png_per_op(tmp_path):
    rows = [{"op": op, "case": f"4096x4096 M={m}", "M": m, "gbps": 10.0 * m, "tflops": 0.01 * m, "median_ms": 1.0,
             "min_ms": 0.9, "max_ms": 1.2} for op in ("w4a16", "fp8_block") for m in (1, 16, 64)]
    src = tmp_path / "b.json"
    src.write_text(json.dumps({"device": {"device": "test"}, "copy_gbps": 100.0, "rows": rows}))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "plot.py"), str(src), "--out", str(tmp_path / "p")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for op in ("w4a16", "fp8_block"):
        png = tmp_path / "p" / f"{op}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
