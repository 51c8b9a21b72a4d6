"""Runs `clquant gemm --check` on the FP8 cases test_fp8_independent.py exported and compares each
output with the exported fp64 reference (rounded to bf16), by SPEC section 6's criterion
(mean|y - ref| / mean|ref| < 1e-3, no NaN). Standard library only, for a machine that has the
clquant binary but not numpy or the Python package:

    python3 python/tests/fp8_independent_check.py DIR build/tools/clquant
    python3 python/tests/fp8_independent_check.py DIR --compare-only   # y_mM.safetensors made elsewhere

Exit 0 when every case passes, 1 otherwise."""
import json
import math
import pathlib
import struct
import subprocess
import sys

PREFIX = "model.layers.0.mlp.down_proj"
TOL = 1e-3


def read_tensor(path, name):
    data = pathlib.Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    t = json.loads(data[8:8 + n])[name]
    b, e = t["data_offsets"]
    raw = data[8 + n + b:8 + n + e]
    if t["dtype"] == "BF16":
        halves = struct.unpack(f"<{len(raw) // 2}H", raw)
        return t["shape"], [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    if t["dtype"] == "F32":
        return t["shape"], list(struct.unpack(f"<{len(raw) // 4}f", raw))
    raise SystemExit(f"{path}: tensor {name} has dtype {t['dtype']}, expected BF16 or F32")


def main(root, clquant):
    """clquant None: compare the y_mM.safetensors already there (written by the same gemm command
    on another machine) without running anything."""
    runs = sorted(pathlib.Path(root).glob("*/x_m*.safetensors"))
    if not runs:
        print(f"no cases under {root} (write them with test_fp8_independent.py DIR)")
        return 1
    failed = 0
    for x in runs:
        d, rows = x.parent, x.name[len("x_"):-len(".safetensors")]
        name = f"{d.name} {rows}"
        out = d / f"y_{rows}.safetensors"
        if clquant is None:
            r = subprocess.CompletedProcess([], 0, "", "")
            if not out.exists():
                print(f"FAIL {name}: {out} is missing")
                failed += 1
                continue
        else:
            if out.exists():  # this script's own output of an earlier run
                out.unlink()
            r = subprocess.run([clquant, "gemm", "--weights", str(d), "--prefix", PREFIX, "--input", str(x),
                                "--output", str(out), "--check"], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: clquant gemm --check exit {r.returncode}\n{r.stdout}{r.stderr}")
            failed += 1
            continue
        ys, y = read_tensor(out, "output")
        es, e = read_tensor(d / f"expected_{rows}.safetensors", "expected")
        if ys != es:
            print(f"FAIL {name}: output shape {ys}, expected {es}")
            failed += 1
            continue
        nan = sum(1 for v in y if not math.isfinite(v))
        err = sum(abs(a - b) for a, b in zip(y, e)) / max(sum(abs(b) for b in e), 1e-30)
        ok = nan == 0 and err < TOL
        ran = next((ln.split(",")[-2].strip() for ln in (r.stdout + r.stderr).splitlines()
                    if ln.startswith("gemm:") and ln.count(",") >= 2), "")
        print(f"{'PASS' if ok else 'FAIL'} {name}: rel err {err:.2e} (tolerance {TOL:g}), {nan} non-finite; {ran}")
        failed += not ok
    print(f"{len(runs) - failed}/{len(runs)} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: fp8_independent_check.py DIR CLQUANT_BINARY|--compare-only")
    sys.exit(main(sys.argv[1], None if sys.argv[2] == "--compare-only" else sys.argv[2]))
