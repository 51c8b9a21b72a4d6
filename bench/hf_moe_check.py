#!/usr/bin/env python3
"""clquant moe against the Hugging Face modules themselves (run where torch and transformers are).

For Mixtral, Qwen2-MoE (gated shared expert) and DeepSeek-V3 (grouped sigmoid routing with the
correction bias, shared experts), a one-layer model is made from a small config, its MoE weights
randomised (router spread so that top-k is not decided by rounding), and saved by transformers'
own `save_pretrained` (the independent writer: on-disk names and config.json as transformers
writes them). The layer's output is computed by the transformers module in fp32 on the same
bf16-rounded weights (transformers 5's grouped-mm experts take no fp64), and `clquant moe --weights DIR` (routing read from config.json, no routing
flags) must agree within SPEC's MoE tolerance.

  source .gpu/gpu-env.sh && CLQ_DEVICE=nvidia python3 bench/hf_moe_check.py build/tools/clquant OUTDIR
"""
import json
import pathlib
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

TOL = 1e-3  # SPEC: mean relative error of the layer output


def families():
    from transformers import DeepseekV3Config, MixtralConfig, Qwen2MoeConfig

    common = dict(num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, vocab_size=128,
                  max_position_embeddings=64, hidden_size=256)
    yield "mixtral", MixtralConfig(intermediate_size=96, num_local_experts=8, num_experts_per_tok=2, **common)
    yield "qwen2_moe", Qwen2MoeConfig(intermediate_size=192, moe_intermediate_size=96,
                                      shared_expert_intermediate_size=160, num_experts=16, num_experts_per_tok=4,
                                      norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], **common)
    yield "deepseek_v3", DeepseekV3Config(intermediate_size=192, moe_intermediate_size=96, n_routed_experts=16,
                                          n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
                                          norm_topk_prob=True, routed_scaling_factor=2.5, first_k_dense_replace=0,
                                          kv_lora_rank=32, q_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=16,
                                          v_head_dim=16, **common)


def moe_module(model):
    layer = model.model.layers[0]
    for name in ("mlp", "block_sparse_moe"):
        if hasattr(layer, name):
            return "model.layers.0." + name, getattr(layer, name)
    raise SystemExit("no MoE module in layer 0")


def margins_ok(fam, mlp, x):
    """Top-k must not hinge on rounding: the k-th and (k+1)-th ranking values differ clearly."""
    with torch.no_grad():
        gate = mlp.gate
        w = gate.weight.double()
        logits = x @ w.t()
        if fam == "deepseek_v3":
            bias = gate.e_score_correction_bias.double()
            key = torch.sigmoid(logits) + bias
        else:
            key = logits
        k = {"mixtral": 2, "qwen2_moe": 4, "deepseek_v3": 4}[fam]
        top = key.topk(k + 1, dim=-1).values
        return bool((top[:, k - 1] - top[:, k]).min() > 1e-3)


def main(clquant, out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM

    failures = 0
    for fam, cfg in families():
        d = out / fam
        for seed in range(20):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
            prefix, mlp = moe_module(model)
            with torch.no_grad():
                # The router (mlp.gate) spread wider than the experts, so logits differ by O(1).
                for n, p in mlp.named_parameters():
                    p.copy_((torch.randn(p.shape) * (0.1 if n == "gate.weight" else 0.05)).to(p.dtype))
                if fam == "deepseek_v3":
                    b = mlp.gate.e_score_correction_bias
                    b.copy_((torch.rand(b.shape) * 0.2).to(b.dtype))
            x = torch.randn(5, cfg.hidden_size).double()  # fp32 values: what clquant reads
            try:
                if margins_ok(fam, mlp, x):
                    break
            except AttributeError as e:  # a router laid out otherwise: take the first seed
                print(f"  (no margin check: {e})")
                break
        model.save_pretrained(d, safe_serialization=True)
        names = sorted({k for f in d.glob("*.safetensors") for k in load_file(str(f)).keys() if ".experts." in k})
        # The prefix as saved (transformers 5 keeps the module at layers.0.mlp in memory but
        # writes Mixtral's legacy block_sparse_moe names).
        prefix = names[0].split(".experts.")[0]
        print(f"{fam}: seed {seed}, {len(names)} expert tensors on disk under {prefix}, e.g. {names[:2]}")
        # Reference through the transformers module itself, on the bf16 weights as saved.
        ref_mlp = mlp.float()
        with torch.no_grad():
            y = ref_mlp(x.float().view(1, 5, -1))
        y = (y[0] if isinstance(y, tuple) else y).view(5, -1).double()
        save_file({"input": x.float().contiguous()}, str(d / "x.safetensors"))
        # The transformers output, so the same folder can be checked on another device without torch
        # (tests/hf_moe_test.py; tests/corpus/hf_moe is such a set).
        save_file({"ref": y.float().contiguous()}, str(d / "ref.safetensors"))
        (d / "prefix.txt").write_text(prefix + "\n")
        cmd = [clquant, "moe", "--weights", str(d), "--prefix", prefix, "--input", str(d / "x.safetensors"),
               "--output", str(d / "y.safetensors")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        print("  " + " ".join(cmd[1:3]) + " ...: rc", r.returncode, (r.stdout + r.stderr).strip().splitlines()[-3:])
        if r.returncode != 0:
            failures += 1
            continue
        got = load_file(str(d / "y.safetensors"))["output"].double()
        rel = float((got - y).abs().mean() / y.abs().mean())
        ok = rel < TOL and torch.isfinite(got).all()
        failures += not ok
        print(f"  {'PASS' if ok else 'FAIL'} {fam}: mean rel err {rel:.2e} (tolerance {TOL}), |y| mean {float(y.abs().mean()):.3e}")
        (d / "result.json").write_text(json.dumps({"family": fam, "rel": rel, "ok": bool(ok), "seed": seed}))
    print(f"{3 - failures}/3 families agree with transformers")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: hf_moe_check.py CLQUANT OUTDIR")
    sys.exit(main(sys.argv[1], sys.argv[2]))
