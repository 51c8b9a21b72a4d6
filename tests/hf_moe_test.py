#!/usr/bin/env python3
"""Runs `clquant moe` on the folders bench/hf_moe_check.py wrote on a machine with torch
(checkpoints saved by transformers' save_pretrained, the input, and the transformers module's
output) and compares, on any device: no torch needed. tests/corpus/hf_moe holds Mixtral,
Qwen2-MoE and DeepSeek-V3 layers (their MoE tensors only), made on the H200 on 2026-12-02.

  python3 tests/hf_moe_test.py tests/corpus/hf_moe build/tools/clquant
"""
import json
import pathlib
import struct
import subprocess
import sys
import tempfile

TOL = 1e-3


def read_f32(path, name):
    """One F32 tensor from a safetensors file (standard library only)."""
    raw = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    t = head[name]
    if t["dtype"] != "F32":
        raise SystemExit(f"{path}: {name} is {t['dtype']}, expected F32")
    a, b = t["data_offsets"]
    data = raw[8 + n + a:8 + n + b]
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def main(root, clquant):
    tmp = tempfile.TemporaryDirectory()  # outputs never go into the corpus folder
    fails = 0
    dirs = sorted(p for p in pathlib.Path(root).iterdir() if (p / "ref.safetensors").exists())
    for d in dirs:
        prefix = (d / "prefix.txt").read_text().strip()
        out = pathlib.Path(tmp.name) / (d.name + ".safetensors")
        r = subprocess.run([clquant, "moe", "--weights", str(d), "--prefix", prefix, "--input", str(d / "x.safetensors"),
                            "--output", str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {d.name}: clquant moe rc {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")
            fails += 1
            continue
        got, ref = read_f32(out, "output"), read_f32(d / "ref.safetensors", "ref")
        err = sum(abs(g - f) for g, f in zip(got, ref)) / max(1e-30, sum(abs(f) for f in ref))
        ok = len(got) == len(ref) and err < TOL and all(g == g for g in got)
        fails += not ok
        print(f"{'PASS' if ok else 'FAIL'} {d.name}: mean rel err {err:.2e} against transformers (tolerance {TOL})")
    print(f"{len(dirs) - fails}/{len(dirs)} families agree")
    return 1 if fails or not dirs else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: hf_moe_test.py DIR CLQUANT")
    sys.exit(main(sys.argv[1], sys.argv[2]))
