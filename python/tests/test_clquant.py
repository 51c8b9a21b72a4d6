"""The Python package against the command line on the same files, plus its own contract."""
import pathlib
import re

import numpy as np
import pytest

import clquant
from conftest import ROOT, read_safetensors

P = "model.layers.0.mlp.down_proj"
MOE = "model.layers.3.mlp"

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None


def bits(a):
    """Raw bits, so two outputs are compared exactly (NaN included)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a.view(np.uint32)


def as_numpy(arr, st_dtype):
    if st_dtype == "BF16":
        assert ml_dtypes is not None
        return arr.view(ml_dtypes.bfloat16)
    return arr


def test_version_matches_cmake():
    want = re.search(r"project\(clquant VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert clquant.__version__ == want
    assert clquant.git_revision


def test_devices_and_capabilities():
    devs = clquant.devices()
    assert isinstance(devs, list) and devs
    assert all("device" in d for d in devs)
    caps = clquant.capabilities()
    assert {"device", "chosen", "support_matrix", "table"} <= set(caps)
    assert "w4a16_gemm" in caps["chosen"]
    assert caps["support_matrix"]["rows"]
    # By index too, and a selector that matches nothing raises clquant.Error.
    assert clquant.capabilities(0)["device"]["device"] == devs[0]["device"]
    with pytest.raises(clquant.Error, match="DeviceNotFound"):
        clquant.capabilities("no-such-device-anywhere")


@pytest.mark.parametrize("spec", [
    ("gptq", 512, 264, 128, 1, 3, "f16"),      # act-order, fp16
    ("gptq_v2", 256, 128, 64, 0, 17, "f32"),   # fp32 activations
    ("awq", 256, 136, 32, 0, 2, "bf16"),       # AWQ, bfloat16 through ml_dtypes
    ("fp8_block", 300, 200, 0, 0, 3, "bf16"),  # FP8 block W8A8
])
def test_linear_matches_cli(make_checkpoint, run_cli, spec):
    if spec[-1] == "bf16" and ml_dtypes is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    d = make_checkpoint(*spec, 11)
    x, xdt = read_safetensors(d / "input.safetensors")["input"]
    x = as_numpy(x, xdt)
    layer = clquant.Linear.from_checkpoint(d, P)
    assert (layer.K, layer.N) == (spec[1], spec[2])
    y = layer(x)
    assert y.dtype == x.dtype and y.shape == (x.shape[0], layer.N)
    run_cli("gemm", "--weights", d, "--prefix", P, "--input", d / "input.safetensors", "--output", d / "y.safetensors")
    ref, rdt = read_safetensors(d / "y.safetensors")["output"]
    # Same files, same device, same kernel: the same bits.
    np.testing.assert_array_equal(bits(y), bits(ref))
    assert np.isfinite(y.astype(np.float32)).all() and np.abs(y.astype(np.float32)).sum() > 0


def test_linear_input_handling(make_checkpoint):
    d = make_checkpoint("gptq", 256, 64, 64, 0, 4, "f16", 5)
    layer = clquant.Linear.from_checkpoint(d, P, format="gptq")
    x = np.random.default_rng(1).uniform(-1, 1, (5, 2 * layer.K)).astype(np.float16)
    # A strided view is made contiguous first; the result equals the contiguous call.
    np.testing.assert_array_equal(layer(x[:, ::2]), layer(np.ascontiguousarray(x[:, ::2])))
    with pytest.raises(ValueError, match="2-D"):
        layer(x[0])
    with pytest.raises(ValueError, match=r"\[M, 256\]"):
        layer(x)
    with pytest.raises(TypeError, match="float16, float32"):
        layer(x[:, :256].astype(np.int32))
    with pytest.raises(TypeError):
        clquant.Linear.from_checkpoint(d, P, device=1.5)


def test_format_refusals_name_the_python_spelling(make_checkpoint):
    d = make_checkpoint("gptq_v2", 256, 64, 64, 0, 4, "f16", 5, "noconfig")
    with pytest.raises(clquant.Error, match=r"\[InvalidArgument\].*format='gptq'.*format='gptq_v2'"):
        clquant.Linear.from_checkpoint(d, P)
    with pytest.raises(clquant.Error, match="'int4' is not one of"):
        clquant.Linear.from_checkpoint(d, P, format="int4")
    with pytest.raises(clquant.Error, match="FormatError.*found under it"):
        clquant.Linear.from_checkpoint(d, "model.layers.0.mlp")
    v1 = clquant.Linear.from_checkpoint(d, P, format="gptq")
    v2 = clquant.Linear.from_checkpoint(d, P, format="gptq_v2")
    x = np.random.default_rng(2).uniform(-1, 1, (2, 256)).astype(np.float32)
    assert not np.array_equal(v1(x), v2(x)), "v1 and v2 readings of the same tensors must differ"


@pytest.mark.parametrize("kind,args", [
    ("moe_int4", ["--top-k", "2"]),
    ("moe_dense", ["--top-k", "2", "--renormalize"]),
    ("moe_dense+ds", ["--top-k", "2"]),    # DeepSeek-V3 shared experts (2 x 128)
    ("moe_int4+qwen", ["--top-k", "2"]),   # Qwen2-MoE gated shared expert (384)
])
def test_moe_matches_cli(make_checkpoint, run_cli, kind, args):
    d = make_checkpoint(kind, 256, 128, 8, 0, 5, "f16", 3)
    x, _ = read_safetensors(d / "input.safetensors")["input"]
    moe = clquant.MoE.from_checkpoint(d, MOE, top_k=2, renormalize="--renormalize" in args)
    assert (moe.E, moe.H, moe.I) == (8, 256, 128)
    shared = {"ds": (256, False), "qwen": (384, True)}.get(kind.partition("+")[2], (0, False))
    assert (moe.shared_I, moe.shared_gated) == shared
    y = moe(x)
    run_cli("moe", "--weights", d, "--prefix", MOE, "--input", d / "input.safetensors", "--output",
            d / "y.safetensors", *args)
    ref, _ = read_safetensors(d / "y.safetensors")["output"]
    np.testing.assert_array_equal(bits(y), bits(ref))
    assert np.abs(y.astype(np.float32)).sum() > 0


def test_moe_grouped_routing_and_errors(make_checkpoint, run_cli):
    d = make_checkpoint("moe_fp8", 256, 128, 16, 1, 4, "f32", 5)
    x, _ = read_safetensors(d / "input.safetensors")["input"]
    moe = clquant.MoE.from_checkpoint(d, MOE, top_k=6, routing="grouped", n_group=4, topk_group=2,
                                      routed_scaling=2.5, renormalize=True)
    y = moe(x)
    run_cli("moe", "--weights", d, "--prefix", MOE, "--input", d / "input.safetensors", "--output",
            d / "y.safetensors", "--top-k", "6", "--routing", "grouped", "--n-group", "4", "--topk-group", "2",
            "--routed-scaling", "2.5", "--renormalize")
    np.testing.assert_array_equal(bits(y), bits(read_safetensors(d / "y.safetensors")["output"][0]))
    bad = clquant.MoE.from_checkpoint(d, MOE, top_k=2, routing="grouped", n_group=3)
    with pytest.raises(clquant.Error, match="must divide E"):
        bad(x)
    with pytest.raises(ValueError):
        clquant.MoE.from_checkpoint(d, MOE, top_k=2, routing="topk")


def test_example_script_runs(make_checkpoint):
    import subprocess
    import sys
    d = make_checkpoint("gptq", 256, 64, 64, 0, 4, "f16", 5)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / "linear_layer.py"), str(d), P],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rel err" in r.stdout


def test_threads_share_a_device(make_checkpoint):
    """Layers of one device called from several threads (the GIL is released during runs) give
    the results of sequential calls."""
    import threading
    d = make_checkpoint("gptq", 512, 264, 128, 1, 3, "f16", 11)
    a = clquant.Linear.from_checkpoint(d, P)
    b = clquant.Linear.from_checkpoint(d, P)
    xs = [np.random.default_rng(i).uniform(-1, 1, (1 + i % 5, 512)).astype(np.float16) for i in range(16)]
    want = [a(x) for x in xs]
    got = [None] * len(xs)

    def work(layer, idx):
        for i in idx:
            got[i] = layer(xs[i])

    ts = [threading.Thread(target=work, args=(a if k % 2 else b, range(k, len(xs), 4))) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for w, g in zip(want, got):
        np.testing.assert_array_equal(bits(w), bits(g))


def test_moe_routing_from_config_json(make_checkpoint, run_cli):
    d = make_checkpoint("moe_dense", 256, 128, 8, 0, 5, "f16", 3)
    x, _ = read_safetensors(d / "input.safetensors")["input"]
    with pytest.raises(ValueError, match="top_k is needed"):
        clquant.MoE.from_checkpoint(d, MOE)
    # Mixtral's family rules: top-k from num_experts_per_tok, always renormalised.
    (d / "config.json").write_text('{"model_type": "mixtral", "num_experts_per_tok": 2}')
    moe = clquant.MoE.from_checkpoint(d, MOE)
    assert moe.config_routing()["model_type"] == "mixtral"
    assert moe.routing["top_k"] == 2 and moe.routing["renormalize"] is True
    y = moe(x)
    explicit = clquant.MoE.from_checkpoint(d, MOE, top_k=2, renormalize=True)(x)
    np.testing.assert_array_equal(bits(y), bits(explicit))
    run_cli("moe", "--weights", d, "--prefix", MOE, "--input", d / "input.safetensors", "--output",
            d / "y.safetensors")
    np.testing.assert_array_equal(bits(y), bits(read_safetensors(d / "y.safetensors")["output"][0]))
    # An argument given overrides the config.
    plain = clquant.MoE.from_checkpoint(d, MOE, renormalize=False)
    assert plain.routing["renormalize"] is False and plain.routing["top_k"] == 2
    assert not np.array_equal(bits(plain(x)), bits(y))


@pytest.mark.parametrize("method,asym", [("int4", False), ("int8", True), ("fp8-block", False)])
def test_online_quantization_matches_cli(make_checkpoint, run_cli, tmp_path, method, asym):
    d = make_checkpoint("dense", 512, 264, 0, 0, 3, "f16", 7)
    x, _ = read_safetensors(d / "input.safetensors")["input"]
    # A dense layer quantized at load: the same bits as `clquant gemm --quantize` on the same files.
    layer = clquant.Linear.from_checkpoint(d, P, quantize=method, asym=asym)
    rel, max_abs = layer.quant_error
    assert 0 < rel < 0.2 and max_abs > 0
    y = layer(x)
    flags = ["--asym"] if asym else []
    run_cli("gemm", "--weights", d, "--prefix", P, "--input", d / "input.safetensors", "--output",
            tmp_path / "y.safetensors", "--quantize", method, *flags)
    np.testing.assert_array_equal(bits(y), bits(read_safetensors(tmp_path / "y.safetensors")["output"][0]))
    # A whole checkpoint: the report, and the same tensors as `clquant quantize` writes.
    report = clquant.quantize(d, tmp_path / "py", method, asym=asym)
    assert [r["layer"] for r in report["layers"]] == ["model.layers.0.mlp.down_proj", "model.layers.0.self_attn.q_proj"]
    assert report["layers"][0]["rel_fro_error"] == pytest.approx(rel, rel=1e-12)
    run_cli("quantize", d, tmp_path / "cli", "--method", method, *flags)
    a, b = read_safetensors(tmp_path / "py" / "model.safetensors"), read_safetensors(tmp_path / "cli" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=name)
    assert clquant.Linear.from_checkpoint(tmp_path / "py", P).K == 512
    assert clquant.Linear.from_checkpoint(tmp_path / "py", P).quant_error is None
    with pytest.raises(clquant.Error, match="is not empty"):
        clquant.quantize(d, tmp_path / "py", method)
    with pytest.raises(clquant.Error, match="'int3' is not one of"):
        clquant.Linear.from_checkpoint(d, P, quantize="int3")


def _unpack_ct(packed, bits, cols):
    """compressed-tensors unpack_from_int32 as its source states it: element i in bits
    [bits*i, bits*i + bits) of the little-endian words of a row, stored as the signed value plus
    2^(bits-1)."""
    per = 32 // bits
    words = packed.astype("<u4")
    fields = (words[..., None] >> (bits * np.arange(per, dtype=np.uint32))) & ((1 << bits) - 1)
    return fields.reshape(packed.shape[0], -1)[:, :cols].astype(np.int64) - (1 << (bits - 1))


@pytest.mark.parametrize("method,group,asym", [("int4", 128, False), ("int4", 64, True), ("int8", -1, True),
                                               ("int8", 128, False), ("fp8-block", 0, False)])
def test_quantized_checkpoint_read_independently(make_checkpoint, tmp_path, method, group, asym):
    """The written checkpoint dequantized here in numpy from the formats' own rules
    (compressed-tensors pack-quantized; HF block FP8), not through clquant's readers: it must give
    the error clquant reports, and the config must say what the tensors are."""
    import json
    if method == "fp8-block" and ml_dtypes is None:
        pytest.skip("e4m3 decoding needs ml_dtypes")
    d = make_checkpoint("dense", 512, 264, 0, 0, 3, "f16", 12)
    report = clquant.quantize(d, tmp_path / "q", method, group_size=group, asym=asym)
    dense = read_safetensors(d / "model.safetensors")
    q = read_safetensors(tmp_path / "q" / "model.safetensors")
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]
    assert "lm_head.weight" in q and q["lm_head.weight"][1] == "F16"  # copied through
    for row in report["layers"]:
        P_, (N, K) = row["layer"], (row["N"], row["K"])
        w = dense[P_ + ".weight"][0].astype(np.float64)
        if method == "fp8-block":
            assert cfg["quant_method"] == "fp8" and cfg["weight_block_size"] == [128, 128]
            assert cfg["activation_scheme"] == "dynamic"
            assert q[P_ + ".weight"][1] == "F8_E4M3"
            codes = q[P_ + ".weight"][0].view(ml_dtypes.float8_e4m3fn).astype(np.float64)
            s = q[P_ + ".weight_scale_inv"][0].astype(np.float64)
            assert s.shape == (-(-N // 128), -(-K // 128))
            deq = codes * np.repeat(np.repeat(s, 128, 0), 128, 1)[:N, :K]
        else:
            bits = 4 if method == "int4" else 8
            g = cfg["config_groups"]["group_0"]
            assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "pack-quantized"
            assert g["weights"]["num_bits"] == bits and g["weights"]["symmetric"] == (not asym)
            assert g["weights"]["strategy"] == ("channel" if group == -1 else "group")
            assert list(q[P_ + ".weight_shape"][0]) == [N, K]
            codes = _unpack_ct(q[P_ + ".weight_packed"][0], bits, K)
            scale = q[P_ + ".weight_scale"][0].astype(np.float64)
            gs = K if group == -1 else group
            assert scale.shape == (N, K // gs)
            if asym:
                zp = _unpack_ct(q[P_ + ".weight_zero_point"][0].T.copy(), bits, N).T  # packed along N
            else:
                assert P_ + ".weight_zero_point" not in q
                zp = np.zeros_like(scale, dtype=np.int64)
            cols = np.arange(K) // gs
            assert codes.min() >= -(1 << (bits - 1)) and codes.max() < (1 << (bits - 1))
            deq = (codes - zp[:, cols]) * scale[:, cols]
        rel = np.linalg.norm(deq - w) / np.linalg.norm(w)
        assert rel == pytest.approx(row["rel_fro_error"], rel=1e-9), P_
        assert np.abs(deq - w).max() == pytest.approx(row["max_abs_error"], rel=1e-9), P_
        assert rel < (0.2 if method == "int4" else 0.05)
