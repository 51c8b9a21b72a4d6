"""FP8 checkpoints written by an independent writer: the `safetensors` package's numpy API writes
the tensors (ml_dtypes float8_e4m3fn -> F8_E4M3, float8_e8m0fnu -> F8_E8M0, bfloat16 -> BF16) and
config.json is laid out as the real tools write it (compressed-tensors' ModelCompressor.update_config:
the QuantizationConfig dump under "quantization_config", keys sorted, indent 2; DeepSeek-V3.1's
"fp8" block config with "scale_fmt": "ue8m0"). Nothing here goes through clquant's own writer
or its host references: the expected output is an fp64 numpy computation from ml_dtypes'
decoding of the stored codes and SPEC's rules (section 4; section 7 for per-token scales;
docs/numerics.md for ue8m0), compared with SPEC section 6's criterion."""
import json
import pathlib

import numpy as np
import pytest

import clquant
from conftest import read_safetensors

# Missing packages are a failure, not a skip: tools/test installs both.
import ml_dtypes  # noqa: E402
import safetensors.numpy as st_numpy  # noqa: E402

E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
BF16 = np.dtype(ml_dtypes.bfloat16)
P = "model.layers.0.mlp.down_proj"
TOL = 1e-3  # SPEC section 6: fp8 GEMMs, mean|y - ref| / mean|ref|
# Neither a multiple of 128: ragged last blocks along both N and K.
N, K, M = 200, 300, 7


# ---- the writer side: what a quantization tool does to a bf16 model -------------------------

def e4m3(v):
    """fp32 values -> e4m3 codes, clamped to the finite range first (ml_dtypes' cast turns values
    beyond 448 into NaN; quantizers clamp, SPEC section 1)."""
    return np.clip(np.asarray(v, np.float32), -448, 448).astype(E4M3)


def pow2_up(s):
    """The smallest power of two >= s (s > 0), from frexp: s = m * 2^e with m in [0.5, 1)."""
    m, e = np.frexp(np.asarray(s, np.float64))
    return np.where(m == 0.5, np.ldexp(1.0, e - 1), np.ldexp(1.0, e))


def bf16_weights(rng, n, k):
    """A bf16 model's linear weight [N, K] (HF layout), rows of different magnitude so per-row and
    per-block scales differ."""
    rows = rng.uniform(0.02, 0.3, (n, 1))
    return (rng.standard_normal((n, k)) * rows).astype(BF16).astype(np.float32)


def quantize_channel(w, scale_dtype):
    """compressed-tensors channel strategy: scale [N, 1] = amax(row) / 448 in the weight's dtype,
    codes = e4m3(w / scale) with the stored (rounded) scale."""
    s = (np.abs(w).max(axis=1, keepdims=True) / 448.0).astype(scale_dtype)
    return e4m3(w / s.astype(np.float32)), s


def quantize_tensor(w, scale_dtype):
    s = np.array([np.abs(w).max() / 448.0]).astype(scale_dtype)
    return e4m3(w / s.astype(np.float32)), s


def quantize_blocks(w, scale_dtype, ue8m0=False):
    """128x128 blocks (ragged at the edges): scale = amax(block) / 448, a power of two rounded up
    with ue8m0 (DeepSeek-V3.1), codes = e4m3(w / scale)."""
    n, k = w.shape
    nb, kb = -(-n // 128), -(-k // 128)
    s = np.empty((nb, kb), np.float64)
    for i in range(nb):
        for j in range(kb):
            s[i, j] = np.abs(w[128 * i:128 * i + 128, 128 * j:128 * j + 128]).max() / 448.0
    if ue8m0:
        s = pow2_up(s)
    s = s.astype(scale_dtype)
    full = np.repeat(np.repeat(s.astype(np.float32), 128, 0), 128, 1)[:n, :k]
    return e4m3(w / full), s


def ct_args(strategy, dynamic, **extra):
    """A QuantizationArgs as compressed-tensors 0.20 serializes it: fields that are None and not
    user-given (actorder, block_structure, scale_dtype, observer, zp_dtype) left out."""
    a = {"num_bits": 8, "type": "float", "symmetric": True, "group_size": None, "strategy": strategy,
         "dynamic": dynamic}
    a.update(extra)
    return a


def ct_config(weights, input_activations, k):
    """config.json after compressed-tensors' ModelCompressor.update_config on a Llama config."""
    qc = {
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                      "input_activations": input_activations, "output_activations": None,
                                      "format": "float-quantized"}},
        "format": "float-quantized",
        "global_compression_ratio": None,
        "ignore": ["lm_head"],
        "kv_cache_scheme": None,
        "moe_sparsity_config": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": "0.20.1",
    }
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": k,
            "intermediate_size": k, "num_hidden_layers": 1, "torch_dtype": "bfloat16", "quantization_config": qc}


def deepseek_config(k):
    """DeepSeek-V3.1's config.json quantization block (block FP8, ue8m0 scales)."""
    return {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": k,
            "torch_dtype": "bfloat16",
            "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}}


def write_checkpoint(d, tensors, config, rng):
    """model.safetensors through safetensors.numpy (with the dense tensors a model also holds)
    and config.json as json.dump(indent=2, sort_keys=True) writes it."""
    tensors = dict(tensors)
    tensors["lm_head.weight"] = rng.standard_normal((16, K)).astype(BF16)
    tensors["model.norm.weight"] = np.ones(K, BF16)
    st_numpy.save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    header = json.loads((d / "model.safetensors").read_bytes()[8:8 + int.from_bytes(
        (d / "model.safetensors").read_bytes()[:8], "little")])
    return {name: t["dtype"] for name, t in header.items() if name != "__metadata__"}


# ---- the reference side: SPEC's rules on ml_dtypes' decoding of the stored codes -------------

def f64(a):
    return np.asarray(a).astype(np.float64)


def quant_acts(x, groups, ue8m0=False):
    """Dynamic activation quantization (SPEC section 4; one group spanning K is section 7's per-token
    rule): per token and group, s = max(amax, 1e-10) / 448 in fp32 (rounded up to a power of two
    with ue8m0), q = e4m3(clamp(x / s)) with fp32 division. Returns decoded codes [M, K] and the
    scale of every column [M, K]."""
    x = np.asarray(x, np.float32)
    q = np.empty(x.shape, np.float64)
    s_cols = np.empty(x.shape, np.float64)
    for c0 in range(0, x.shape[1], groups):
        g = x[:, c0:c0 + groups]
        s = np.maximum(np.abs(g).max(axis=1, keepdims=True), np.float32(1e-10)) / np.float32(448)
        s = s.astype(np.float32)
        if ue8m0:
            s = pow2_up(s).astype(np.float32)
        q[:, c0:c0 + groups] = f64(e4m3(g / s))
        s_cols[:, c0:c0 + groups] = s
    return q, s_cols


def ref_block(x, codes, s_w, ue8m0=False):
    """Y[m][n] = sum_j (sum_{k in j} qa qw) * sa[m][j] * Sw[n/128][j], in fp64."""
    qa, sa = quant_acts(x, 128, ue8m0)
    qw, sw = f64(codes), f64(s_w)
    y = np.zeros((x.shape[0], qw.shape[0]))
    for j in range(sw.shape[1]):
        cols = slice(128 * j, 128 * j + 128)
        part = qa[:, cols] @ qw[:, cols].T
        y += part * sa[:, [128 * j]] * np.repeat(sw[:, j], 128)[:qw.shape[0]][None, :]
    return y


def ref_channel_dynamic(x, codes, s_w):
    """Per-token scales over all K (compressed-tensors FP8_DYNAMIC): (qa @ qw^T) * sa[m] * s[n]."""
    qa, sa = quant_acts(x, x.shape[1])
    return (qa @ f64(codes).T) * sa[:, [0]] * f64(s_w).reshape(1, -1)


def ref_static(x, codes, s_w, s_in):
    """Static per-tensor input_scale: qa = e4m3(clamp(x / s_in)), (qa @ qw^T) * s_in * s_w (s_w one
    value or one per row)."""
    s_in32 = np.float32(f64(s_in).item())
    qa = f64(e4m3(np.asarray(x, np.float32) / s_in32))
    return (qa @ f64(codes).T) * float(s_in32) * f64(s_w).reshape(1, -1)


def rel_err(y, ref):
    y = f64(y)
    assert np.isfinite(y).all(), "NaN or Inf in the output"
    return np.abs(y - ref).mean() / np.abs(ref).mean()


def check(y, ref, dtype):
    """SPEC section 6: the reference rounded once to the output dtype, then the mean relative error."""
    assert y.dtype == dtype and y.shape == ref.shape
    assert np.abs(ref).mean() > 0.1, "degenerate reference"
    err = rel_err(y, f64(ref.astype(dtype)))
    assert err < TOL, f"mean relative error {err:.3e} >= {TOL}"
    return err


def activations(rng, dtype=BF16, rows=M):
    """Seeded activations as a model feeds them (bf16 values), a few outliers per row."""
    x = rng.standard_normal((rows, K)).astype(np.float32)
    x[:, rng.integers(0, K, 3)] *= 8
    return x.astype(dtype)


# ---- the cases ------------------------------------------------------------------------------

def test_safetensors_numpy_writes_fp8_dtypes(tmp_path):
    """The premise: safetensors.numpy takes ml_dtypes' float8 arrays and names them F8_E4M3 /
    F8_E8M0, bytes unchanged."""
    codes = np.arange(256, dtype=np.uint8)
    codes = codes[(codes & 0x7F) != 0x7F].view(E4M3)
    exps = np.array([0, 1, 126, 127, 128, 254], np.uint8).view(E8M0)
    st_numpy.save_file({"w": codes, "s": exps}, str(tmp_path / "t.safetensors"))
    data = (tmp_path / "t.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    assert header["w"]["dtype"] == "F8_E4M3" and header["s"]["dtype"] == "F8_E8M0"
    b, e = header["w"]["data_offsets"]
    assert data[8 + n + b:8 + n + e] == codes.view(np.uint8).tobytes()
    b, e = header["s"]["data_offsets"]
    assert data[8 + n + b:8 + n + e] == bytes([0, 1, 126, 127, 128, 254])
    # ml_dtypes' e8m0 decoding is 2^(e - 127): the rule clquant's loader must match.
    assert list(f64(exps)) == [2.0 ** -127, 2.0 ** -126, 0.5, 1.0, 2.0, 2.0 ** 127]


@pytest.mark.parametrize("seed", [11, 12])
def test_compressed_tensors_channel_dynamic(tmp_path, seed):
    """FP8_DYNAMIC: channel weights (weight_scale [N, 1] bf16), dynamic per-token activations."""
    rng = np.random.default_rng(seed)
    w = bf16_weights(rng, N, K)
    codes, s = quantize_channel(w, BF16)
    assert s.shape == (N, 1)
    cfg = ct_config(ct_args("channel", False), ct_args("token", True), K)
    dtypes = write_checkpoint(tmp_path, {P + ".weight": codes, P + ".weight_scale": s}, cfg, rng)
    assert dtypes[P + ".weight"] == "F8_E4M3" and dtypes[P + ".weight_scale"] == "BF16"
    layer = clquant.Linear.from_checkpoint(tmp_path, P)
    assert (layer.K, layer.N) == (K, N)
    assert "per-channel" in layer.description
    x = activations(rng)
    y = layer(x)
    ref = ref_channel_dynamic(x, codes, s)
    check(y, ref, BF16)
    # The test can tell readings apart: per-128-column activation scales compute other numbers.
    assert rel_err(y, ref_block(x, codes, np.ones((2, 3))) * f64(s).reshape(1, -1)) > 3 * TOL


def test_compressed_tensors_block_dynamic(tmp_path):
    """FP8_BLOCK: weight_scale [ceil(N/128), ceil(K/128)] bf16 under the name weight_scale, dynamic
    activations per token and 128 columns (group_size 128)."""
    rng = np.random.default_rng(21)
    w = bf16_weights(rng, N, K)
    codes, s = quantize_blocks(w, BF16)
    assert s.shape == (2, 3)
    cfg = ct_config(ct_args("block", False, block_structure=[128, 128]),
                    ct_args("group", True, group_size=128), K)
    write_checkpoint(tmp_path, {P + ".weight": codes, P + ".weight_scale": s}, cfg, rng)
    layer = clquant.Linear.from_checkpoint(tmp_path, P)
    assert "block" in layer.description
    for dtype in (BF16, np.dtype(np.float32)):
        x = activations(rng, dtype)
        check(layer(x), ref_block(x, codes, s), dtype)
    # The scales are multiplied: reading them as inverses is far off.
    assert rel_err(layer(x), ref_block(x, codes, 1.0 / f64(s))) > 3 * TOL


@pytest.mark.parametrize("weights", ["tensor", "channel"])
def test_compressed_tensors_static_input_scale(tmp_path, weights):
    """The FP8 preset (per-tensor weight scale, static per-tensor input_scale from a calibration
    pass) and channel weights with the same static activations. Scales in bf16 as compressed-tensors
    stores them (the observed dtype); the activations exceed the calibrated range here and there,
    so the clamp matters."""
    rng = np.random.default_rng(31)
    w = bf16_weights(rng, N, K)
    codes, s = quantize_tensor(w, BF16) if weights == "tensor" else quantize_channel(w, BF16)
    calib = activations(rng).astype(np.float32)
    s_in = np.array([np.abs(calib).max() / 448.0 * 0.8]).astype(BF16)  # static_minmax, then a hotter input
    cfg = ct_config(ct_args(weights, False), ct_args("tensor", False, observer="static_minmax"), K)
    write_checkpoint(tmp_path, {P + ".weight": codes, P + ".weight_scale": s, P + ".input_scale": s_in}, cfg, rng)
    layer = clquant.Linear.from_checkpoint(tmp_path, P)
    x = activations(rng)
    assert (np.abs(x.astype(np.float32)) / float(s_in[0]) > 448).any(), "no activation beyond the static range"
    y = layer(x)
    check(y, ref_static(x, codes, s, s_in), BF16)
    # Dynamic per-tensor scales compute other numbers: the static scale is what was used.
    dyn = np.array([np.abs(x.astype(np.float32)).max() / 448.0], np.float32)
    assert rel_err(y, ref_static(x, codes, s, dyn)) > 3 * TOL


@pytest.mark.parametrize("scale_storage", ["F32", "F8_E8M0"])
def test_deepseek_block_ue8m0(tmp_path, scale_storage):
    """DeepSeek-V3.1 block FP8: weight_scale_inv (multiplied despite the name) as powers of two,
    stored as F32 or as F8_E8M0 bytes, and scale_fmt ue8m0: activation scales rounded up to powers
    of two."""
    rng = np.random.default_rng(41)
    w = bf16_weights(rng, N, K)
    codes, s = quantize_blocks(w, np.float32, ue8m0=True)
    stored = s.astype(E8M0) if scale_storage == "F8_E8M0" else s
    assert np.array_equal(f64(stored), f64(s)), "powers of two are exact in e8m0"
    dtypes = write_checkpoint(tmp_path, {P + ".weight": codes, P + ".weight_scale_inv": stored},
                              deepseek_config(K), rng)
    assert dtypes[P + ".weight_scale_inv"] == scale_storage
    layer = clquant.Linear.from_checkpoint(tmp_path, P)
    assert "ue8m0" in layer.description
    x = activations(rng)
    y = layer(x)
    check(y, ref_block(x, codes, stored, ue8m0=True), BF16)
    # Plain (not rounded) activation scales give other numbers: the ue8m0 rule is being applied.
    assert rel_err(y, ref_block(x, codes, stored, ue8m0=False)) > 3 * TOL


def test_cli_gemm_check_on_an_independent_checkpoint(tmp_path, run_cli):
    """`clquant gemm --check` on a compressed-tensors block checkpoint and an input file both
    written by safetensors.numpy; its output file also meets the independent reference."""
    rng = np.random.default_rng(51)
    w = bf16_weights(rng, N, K)
    codes, s = quantize_blocks(w, BF16)
    cfg = ct_config(ct_args("block", False, block_structure=[128, 128]),
                    ct_args("group", True, group_size=128), K)
    write_checkpoint(tmp_path, {P + ".weight": codes, P + ".weight_scale": s}, cfg, rng)
    x = activations(rng)
    st_numpy.save_file({"input": x}, str(tmp_path / "x.safetensors"))
    run_cli("gemm", "--weights", tmp_path, "--prefix", P, "--input", tmp_path / "x.safetensors", "--output",
            tmp_path / "y.safetensors", "--check")
    y, dt = read_safetensors(tmp_path / "y.safetensors")["output"]
    assert dt == "BF16"
    check(y.view(BF16), ref_block(x, codes, s), BF16)


# ---- the same checkpoints for another machine: files here, clquant there ---------------------
# `python3 python/tests/test_fp8_independent.py DIR` writes each case into DIR/<case>/ (the
# checkpoint, x_mM.safetensors inputs and expected_mM.safetensors: the fp64 reference rounded to
# bf16), and
# python/tests/fp8_independent_check.py (standard library only) runs `clquant gemm --check` on
# each and compares the output with expected.safetensors, for a machine without this package.

# Decode-sized and prefill-sized inputs: on GPUs they take different variants (gemv below M=8,
# the mma kernels from there on the H200; CLQ_VARIANT forces others).
EXPORT_ROWS = (5, 77)


def export_cases(root, seed=61):
    rng = np.random.default_rng(seed)
    block_cfg = ct_config(ct_args("block", False, block_structure=[128, 128]),
                          ct_args("group", True, group_size=128), K)
    cases = {}
    w = bf16_weights(rng, N, K)
    codes, s = quantize_channel(w, BF16)
    cases["ct_channel_dynamic"] = ({P + ".weight": codes, P + ".weight_scale": s},
                                   ct_config(ct_args("channel", False), ct_args("token", True), K),
                                   lambda x, c=codes, s=s: ref_channel_dynamic(x, c, s))
    codes, s = quantize_blocks(w, BF16)
    cases["ct_block_dynamic"] = ({P + ".weight": codes, P + ".weight_scale": s}, block_cfg,
                                 lambda x, c=codes, s=s: ref_block(x, c, s))
    s_in = np.array([0.02]).astype(BF16)
    for strategy in ("tensor", "channel"):
        codes, s = quantize_tensor(w, BF16) if strategy == "tensor" else quantize_channel(w, BF16)
        cases[f"ct_{strategy}_static"] = (
            {P + ".weight": codes, P + ".weight_scale": s, P + ".input_scale": s_in},
            ct_config(ct_args(strategy, False), ct_args("tensor", False, observer="static_minmax"), K),
            lambda x, c=codes, s=s: ref_static(x, c, s, s_in))
    codes, s = quantize_blocks(w, np.float32, ue8m0=True)
    for storage, stored in (("f32", s), ("e8m0", s.astype(E8M0))):
        cases[f"ds_ue8m0_{storage}"] = ({P + ".weight": codes, P + ".weight_scale_inv": stored}, deepseek_config(K),
                                        lambda x, c=codes, s=stored: ref_block(x, c, s, ue8m0=True))
    for name, (tensors, cfg, ref) in cases.items():
        d = root / name
        d.mkdir(parents=True)
        write_checkpoint(d, tensors, cfg, rng)
        for rows in EXPORT_ROWS:
            x = activations(rng, rows=rows)
            st_numpy.save_file({"input": x}, str(d / f"x_m{rows}.safetensors"))
            st_numpy.save_file({"expected": ref(x).astype(BF16)}, str(d / f"expected_m{rows}.safetensors"))
    return sorted(cases)


def test_export_and_stdlib_checker(tmp_path, tools):
    """The files-here, clquant-there route works end to end on this machine's build."""
    import subprocess
    import sys
    names = export_cases(tmp_path)
    assert len(names) == 6
    checker = pathlib.Path(__file__).with_name("fp8_independent_check.py")
    r = subprocess.run([sys.executable, str(checker), str(tmp_path), str(tools[1])], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 6 * len(EXPORT_ROWS), r.stdout
    # A wrong expected file fails: the checker compares, it does not just run.
    bad = tmp_path / "ct_block_dynamic"
    st_numpy.save_file({"expected": np.ones((EXPORT_ROWS[0], N), BF16)},
                       str(bad / f"expected_m{EXPORT_ROWS[0]}.safetensors"))
    r = subprocess.run([sys.executable, str(checker), str(tmp_path), str(tools[1])], capture_output=True, text=True)
    assert r.returncode == 1 and "FAIL ct_block_dynamic" in r.stdout, r.stdout + r.stderr
    # Outputs made elsewhere are compared as they are; a missing one fails.
    r = subprocess.run([sys.executable, str(checker), str(tmp_path), "--compare-only"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.count("PASS") == 6 * len(EXPORT_ROWS) - 1, r.stdout + r.stderr
    (tmp_path / "ds_ue8m0_f32" / "y_m5.safetensors").unlink()
    r = subprocess.run([sys.executable, str(checker), str(tmp_path), "--compare-only"], capture_output=True, text=True)
    assert "FAIL ds_ue8m0_f32 m5" in r.stdout and "is missing" in r.stdout, r.stdout


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 2:
        sys.exit("usage: test_fp8_independent.py DIR   (writes the cases into DIR/<case>/)")
    print("\n".join(export_cases(pathlib.Path(sys.argv[1]))))
