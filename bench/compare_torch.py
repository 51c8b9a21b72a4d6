#!/usr/bin/env python3
"""Same-run comparison on an NVIDIA GPU: clquant (through OpenCL) against torch/cuBLAS.

Runs `clquant bench` for the shapes (JSON), then times torch baselines on the same GPU with CUDA
events (median of --reps after warm-up):
  w4a16: fp16 torch.matmul, and torch._weight_int4pack_mm with group 128 (bf16)
  fp8:   torch._scaled_mm with 1x128 / 128x128 block scales where this torch supports them, else
         rowwise scales (the table says which)
  w8a8_int8: torch._int_mm (int8 x int8 -> int32, cuBLAS) alone, and with what the op also does:
         per-token int8 activation quantization before it and both scales applied after
  moe:   the layer after routing (sort by expert, both expert GEMMs, SiLU-and-mul, weighted combine)
         through torch._grouped_mm (bf16 experts); FP8 experts through torch._scaled_grouped_mm
         (rowwise scales) where this torch has it, else a per-expert torch._scaled_mm loop (labelled)
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


def run_clquant(clquant, op, shapes, ms, extra=()):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "b.json")
        env = dict(os.environ)
        env.setdefault("CLQ_DEVICE", "nvidia")
        cmd = [clquant, "bench", op, "--ms", ",".join(map(str, ms)), "--json-out", out]
        if op != "moe":
            cmd += ["--shapes", ",".join(f"{n}x{k}" for n, k in shapes), "--no-baseline"]
        else:
            cmd += ["--breakdown"]
        cmd += list(extra)
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
    # Block-wise: cuBLAS wants the activation scales [M, K/128] outer-dim-major (a transposed
    # [K/128, M] tensor) and the weight scales [ceil(N/128), K/128] passed transposed; it refuses M=1.
    try:
        sa = torch.rand(K // 128, M, device="cuda", dtype=torch.float32).t()
        sb = torch.rand((N + 127) // 128, K // 128, device="cuda", dtype=torch.float32)
        res["torch _scaled_mm block 1x128/128x128"] = cuda_time(
            lambda: torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb.t(), out_dtype=torch.bfloat16), reps)
    except Exception as e:
        res["torch _scaled_mm block 1x128/128x128"] = f"unavailable: {type(e).__name__}: {e}"[:120]
    try:
        sa = torch.rand(M, 1, device="cuda", dtype=torch.float32)
        sb = torch.rand(1, N, device="cuda", dtype=torch.float32)
        res["torch _scaled_mm rowwise"] = cuda_time(
            lambda: torch._scaled_mm(a, w.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16), reps)
    except Exception as e2:
        res["torch _scaled_mm rowwise"] = f"unavailable: {type(e2).__name__}: {e2}"[:120]
    return res


def torch_w8a8_int8(N, K, M, reps):
    import torch
    res = {}
    x = torch.randn(M, K, device="cuda", dtype=torch.float16)
    a = torch.randint(-128, 128, (M, K), device="cuda", dtype=torch.int8)
    w = torch.randint(-128, 128, (N, K), device="cuda", dtype=torch.int8)
    sw = torch.rand(N, device="cuda", dtype=torch.float32)
    # cuBLAS int8 wants M > 16 and K, N multiples of 8; it refuses the rest.
    try:
        res["torch _int_mm"] = cuda_time(lambda: torch._int_mm(a, w.t()), reps)
    except Exception as e:
        res["torch _int_mm"] = f"unavailable: {type(e).__name__}: {e}"[:120]

    def layer():  # what clquant's op does: quantize per token, int32 GEMM, both scales
        sa = x.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-10) / 127.0
        q = torch.clamp(torch.round(x.float() / sa), -128, 127).to(torch.int8)
        return ((torch._int_mm(q, w.t()).float() * sa) * sw).to(torch.float16)
    try:
        res["torch quantize + _int_mm + scales"] = cuda_time(layer, reps)
    except Exception as e:
        res["torch quantize + _int_mm + scales"] = f"unavailable: {type(e).__name__}: {e}"[:120]
    return res


# The models of `clquant bench moe`: E, k, H, I, FP8 experts.
MOE_MODELS = {"mixtral-8x7b": (8, 2, 4096, 14336, False), "qwen3-30b-a3b": (128, 8, 2048, 768, False),
              "deepseek-v3": (256, 8, 7168, 2048, True)}


def torch_moe(model, T, reps):
    """The expert part of the layer for random top-k routing (distinct experts per token)."""
    import torch
    E, k, H, I, fp8 = MOE_MODELS[model]
    torch.manual_seed(T)
    x = torch.randn(T, H, device="cuda", dtype=torch.bfloat16)
    ids = torch.rand(T, E, device="cuda").topk(k, dim=1).indices.to(torch.int32)
    wts = torch.rand(T, k, device="cuda", dtype=torch.float32)
    res = {}

    def sort_rows(pad):
        flat = ids.flatten()
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=E)
        if pad == 1:
            offs = torch.cumsum(counts, 0).to(torch.int32)
            return order, offs, None
        # Groups padded to `pad` rows (what the FP8 grouped kernel asks for); padding rows are token 0.
        padded = (counts + pad - 1) // pad * pad
        offs = torch.cumsum(padded, 0).to(torch.int32)
        starts = offs - padded
        rank = torch.arange(flat.numel(), device="cuda") - (torch.cumsum(counts, 0) - counts)[flat[order]]
        dst = starts[flat[order]] + rank
        src = torch.zeros(int(offs[-1].item()), dtype=torch.long, device="cuda")
        valid = torch.zeros_like(src, dtype=torch.bool)
        src[dst] = order
        valid[dst] = True
        return src, offs, valid

    def combine(y_rows, order, valid):
        out = torch.zeros(T, H, device="cuda", dtype=torch.float32)
        if valid is not None:
            y_rows, order = y_rows[valid], order[valid]
        w = wts.flatten()[order].unsqueeze(1)
        out.index_add_(0, order // k, y_rows.float() * w)
        return out.to(torch.bfloat16)

    if not fp8:
        w13 = torch.randn(E, 2 * I, H, device="cuda", dtype=torch.bfloat16) * 0.02
        w2 = torch.randn(E, H, I, device="cuda", dtype=torch.bfloat16) * 0.02

        def layer():
            order, offs, _ = sort_rows(1)
            xs = x[order // k]
            h = torch._grouped_mm(xs, w13.transpose(-2, -1), offs=offs)
            a = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
            y = torch._grouped_mm(a, w2.transpose(-2, -1), offs=offs)
            return combine(y, order, None)
        try:
            res["torch._grouped_mm (sort, 2 GEMMs, silu, combine)"] = cuda_time(layer, reps)
        except Exception as e:
            res["torch._grouped_mm (sort, 2 GEMMs, silu, combine)"] = f"unavailable: {type(e).__name__}: {e}"[:160]
        del w13, w2
        return res
    f8 = torch.float8_e4m3fn
    w13 = (torch.randn(E, 2 * I, H, device="cuda") * 0.02).to(f8)
    w2 = (torch.randn(E, H, I, device="cuda") * 0.02).to(f8)
    s13 = torch.rand(E, 2 * I, device="cuda", dtype=torch.float32)
    s2 = torch.rand(E, H, device="cuda", dtype=torch.float32)

    def quant(v):  # rowwise dynamic activation scales
        s = v.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-10) / 448.0
        return (v.float() / s).clamp(-448, 448).to(f8), s.squeeze(1)

    if hasattr(torch, "_scaled_grouped_mm"):
        def layer_g():
            src, offs, valid = sort_rows(16)
            xq, sx = quant(x[src // k])
            h = torch._scaled_grouped_mm(xq, w13.transpose(-2, -1), sx, s13, offs=offs, out_dtype=torch.bfloat16)
            a = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
            aq, sa = quant(a)
            y = torch._scaled_grouped_mm(aq, w2.transpose(-2, -1), sa, s2, offs=offs, out_dtype=torch.bfloat16)
            return combine(y, src, valid)
        name = "torch._scaled_grouped_mm rowwise (groups padded to 16)"
        try:
            res[name] = cuda_time(layer_g, reps)
        except Exception as e:
            res[name] = f"unavailable: {type(e).__name__}: {e}"[:160]
    else:
        res["torch._scaled_grouped_mm"] = "unavailable in this torch"

    def layer_loop():  # per active expert, rowwise _scaled_mm; the host loop syncs on the counts
        flat = ids.flatten()
        out = torch.zeros(T, H, device="cuda", dtype=torch.float32)
        for e in torch.unique(flat).tolist():
            rows = (flat == e).nonzero().squeeze(1)
            xq, sx = quant(x[rows // k])
            h = torch._scaled_mm(xq, w13[e].t(), scale_a=sx.unsqueeze(1), scale_b=s13[e].unsqueeze(0),
                                 out_dtype=torch.bfloat16)
            a = torch.nn.functional.silu(h[:, :I]) * h[:, I:]
            aq, sa = quant(a)
            y = torch._scaled_mm(aq, w2[e].t(), scale_a=sa.unsqueeze(1), scale_b=s2[e].unsqueeze(0),
                                 out_dtype=torch.bfloat16)
            out.index_add_(0, rows // k, y.float() * wts.flatten()[rows].unsqueeze(1))
        return out.to(torch.bfloat16)
    name = "per-expert torch._scaled_mm rowwise loop (host loop)"
    try:
        res[name] = cuda_time(layer_loop, max(5, reps // 5))
    except Exception as e:
        res[name] = f"unavailable: {type(e).__name__}: {e}"[:160]
    del w13, w2
    return res


def main_moe(args):
    ms = [int(m) for m in args.ms.split(",")]
    ours = run_clquant(args.clquant, "moe", [], ms, ["--models", args.models] if args.models else [])
    import torch
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"clquant device: {ours['device']['device']} (OpenCL driver {ours['device']['driver_version']})")
    rows = []
    for r in ours["rows"]:
        model = r["case"].split(" ")[0]
        if model not in MOE_MODELS:
            continue
        base = torch_moe(model, r["M"], args.reps)
        rows.append({"case": r["case"], "T": r["M"], "clquant_ms": r["median_ms"], "clquant_wall_ms": r.get("wall_ms", 0),
                     "baselines": base})
        print(f"\nmoe {r['case']}: clquant {r['median_ms'] * 1e3:.1f} us device, "
              f"{r.get('wall_ms', 0) * 1e3:.1f} us wall")
        for name, v in base.items():
            if isinstance(v, str):
                print(f"  {name:56s} {v}")
            else:
                print(f"  {name:56s} {v * 1e3:9.1f} us   clquant is {v / r['median_ms']:.2f}x its speed")
        torch.cuda.empty_cache()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"op": "moe", "rows": rows, "clquant_device": ours["device"], "clquant": ours}, f, indent=2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--op", choices=["w4a16", "fp8", "w8a8_int8", "moe"], default="w4a16")
    p.add_argument("--clquant", default="build/tools/clquant")
    p.add_argument("--shapes", default=None, help="NxK list (default: the issue's)")
    p.add_argument("--models", default=None, help="moe: only these models (clquant bench moe --models)")
    p.add_argument("--ms", default=None, help="M (T for moe) list; default 1,16,4096 (moe: 1,16,64)")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--json-out", default=None)
    args = p.parse_args()
    if args.ms is None:
        args.ms = "1,16,64" if args.op == "moe" else "1,16,4096"
    if args.op == "moe":
        return main_moe(args)
    default_shapes = {"w4a16": "28672x8192,8192x8192", "fp8": "7168x16384,2112x7168",
                      "w8a8_int8": "8192x8192,28672x8192"}[args.op]
    shapes = [tuple(int(v) for v in s.split("x")) for s in (args.shapes or default_shapes).split(",")]
    ms = [int(m) for m in args.ms.split(",")]
    ours = run_clquant(args.clquant, args.op, shapes, ms)
    rows = []
    for r in ours["rows"]:
        if r["op"] not in ("w4a16", "fp8_block", "w8a8_int8"):
            continue
        N, K, M = r["N"], r["K"], r["M"]
        peer = {"w4a16": torch_w4a16, "fp8": torch_fp8, "w8a8_int8": torch_w8a8_int8}[args.op]
        base = peer(N, K, M, args.reps)
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
