#!/usr/bin/env python3
"""Same-run comparison on an NVIDIA GPU: clquant (through OpenCL) against torch/cuBLAS.

Runs `clquant bench` for the shapes (JSON), then times torch baselines on the same GPU with CUDA
events (median of --reps after warm-up):
  w4a16: fp16 torch.matmul, and torch._weight_int4pack_mm with group 128 (bf16)
  fp8:   torch._scaled_mm with 1x128 / 128x128 block scales where this torch supports them, else
         rowwise scales (the table says which)
and prints one table of ratios per shape (ratio > 1: clquant is faster). Usage, on the GPU
machine (bench/RESULTS.md has the numbers):
  source .gpu/gpu-env.sh && python3 bench/compare_torch.py --op w4a16 --json-out $OUT/cmp.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def run_clquant(clquant, op, shapes, ms):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "b.json")
        env = dict(os.environ)
        env.setdefault("CLQ_DEVICE", "nvidia")
        cmd = [clquant, "bench", op, "--shapes", ",".join(f"{n}x{k}" for n, k in shapes),
               "--ms", ",".join(map(str, ms)), "--no-baseline", "--json-out", out]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)


def cuda_time(fn, reps):
    import torch
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def torch_w4a16(N, K, M, reps):
    import torch
    res = {}
    x16 = torch.randn(M, K, device="cuda", dtype=torch.float16)
    w16 = torch.randn(K, N, device="cuda", dtype=torch.float16)
    res["torch fp16 matmul"] = cuda_time(lambda: torch.matmul(x16, w16), reps)
    try:
        xb = x16.to(torch.bfloat16)
        q = torch.randint(0, 16, (N, K), device="cuda", dtype=torch.int32)
        packed_u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        wq = torch._convert_weight_to_int4pack(packed_u8, 8)
        sz = torch.rand(K // 128, N, 2, device="cuda", dtype=torch.bfloat16)
        res["torch int4 _weight_int4pack_mm"] = cuda_time(lambda: torch._weight_int4pack_mm(xb, wq, 128, sz), reps)
    except Exception as e:  # the API changes between torch versions: report, do not fail
        res["torch int4 _weight_int4pack_mm"] = f"unavailable: {type(e).__name__}: {e}"[:120]
    return res


def torch_fp8(N, K, M, reps):
    import torch
    res = {}
    a = torch.randn(M, K, device="cuda").to(torch.float8_e4m3fn)
    w = torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn)
    try:
        sa = torch.rand(M, K // 128, device="cuda", dtype=torch.float32)
        sb = torch.rand(K // 128, N // 128, device="cuda", dtype=torch.float32)
        res["torch _scaled_mm block 1x128/128x128"] = cuda_time(
            lambda: torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16), reps)
    except Exception as e:
        res["torch _scaled_mm block 1x128/128x128"] = f"unavailable: {type(e).__name__}"
        try:
            sa = torch.rand(M, 1, device="cuda", dtype=torch.float32)
            sb = torch.rand(1, N, device="cuda", dtype=torch.float32)
            res["torch _scaled_mm rowwise"] = cuda_time(
                lambda: torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16), reps)
        except Exception as e2:
            res["torch _scaled_mm rowwise"] = f"unavailable: {type(e2).__name__}"
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--op", choices=["w4a16", "fp8"], default="w4a16")
    p.add_argument("--clquant", default="build/tools/clquant")
    p.add_argument("--shapes", default=None, help="NxK list (default: the issue's)")
    p.add_argument("--ms", default="1,16,4096")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--json-out", default=None)
    args = p.parse_args()
    default_shapes = {"w4a16": "28672x8192,8192x8192", "fp8": "7168x16384,2112x7168"}[args.op]
    shapes = [tuple(int(v) for v in s.split("x")) for s in (args.shapes or default_shapes).split(",")]
    ms = [int(m) for m in args.ms.split(",")]
    ours = run_clquant(args.clquant, args.op, shapes, ms)
    rows = []
    for r in ours["rows"]:
        if r["op"] not in ("w4a16", "fp8_block"):
            continue
        N, K, M = r["N"], r["K"], r["M"]
        base = torch_w4a16(N, K, M, args.reps) if args.op == "w4a16" else torch_fp8(N, K, M, args.reps)
        rows.append({"shape": f"{N}x{K}", "M": M, "clquant_ms": r["median_ms"], "variant": r["variant"],
                     "flops": r["flops"], "baselines": base})
    import torch
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"clquant device: {ours['device']['device']} (OpenCL driver {ours['device']['driver_version']})")
    for row in rows:
        tf = row["flops"] / (row["clquant_ms"] * 1e-3) / 1e12
        print(f"\n{args.op} {row['shape']} M={row['M']}: clquant {row['clquant_ms'] * 1e3:.1f} us "
              f"({row['variant']}, {tf:.1f} TFLOP/s)")
        for name, v in row["baselines"].items():
            if isinstance(v, str):
                print(f"  {name:40s} {v}")
            else:
                print(f"  {name:40s} {v * 1e3:9.1f} us   clquant is {v / row['clquant_ms']:.2f}x its speed")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"op": args.op, "rows": rows, "clquant_device": ours["device"]}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
