"""compressed-tensors `pack-quantized` int4 checkpoints written by an independent writer: numpy
packs the codes and `safetensors.numpy` writes the file, config.json as compressed-tensors'
ModelCompressor.update_config lays it out. The layout follows the compressed-tensors 0.20 source
(compressors/pack_quantized/helpers.py, quantization/lifecycle/forward.py), read, not copied:

- codes are signed, [-8, 7]; packing adds 8 and puts element i of each run of eight at bits
  4*(i % 8) of an int32 word (least significant nibble first);
- weight_packed I32 [N, K/8] is packed along K (dim 1), weight_scale [N, K/G] in the model's
  dtype, weight_shape I64 [N, K];
- asymmetric: weight_zero_point (signed, same offset) packed along N (packed_dim=0): I32
  [ceil(N/8), K/G]; symmetric layers have no zero point (zero 0);
- dequantization is (q - z) * s with s, z of the column's group (channel: one group per row).

The expected output is fp64 numpy on this reading with the exact products (compressed-tensors'
own decompress rounds (q - z) * s to the scale dtype; vLLM's kernels do not); clquant's host
reference is never used. Each
case also shows that a plausible wrong reading misses by more than 3x the tolerance, so a pass
means clquant read the layout this way."""
import json

import numpy as np
import pytest

import clquant
from conftest import read_safetensors

import ml_dtypes  # noqa: E402  (missing packages fail: tools/test installs them)
import safetensors.numpy as st_numpy  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
P = "model.layers.0.mlp.down_proj"
TOL = 1e-3  # SPEC section 6, w4a16: mean|y - ref| / mean|ref|
N, M = 200, 7  # N a multiple of 8 (the zero points pack along it) but of neither 16 nor 128


# ---- the writer side: what llm-compressor + compressed-tensors do to a bf16 model -----------

def bf16_weights(rng, n, k):
    """Rows of different magnitude and skew (a per-row shift), so asymmetric zero points vary."""
    rows = rng.uniform(0.02, 0.3, (n, 1))
    shift = rng.uniform(-1.5, 1.5, (n, 1))
    return ((rng.standard_normal((n, k)) + shift) * rows).astype(BF16).astype(np.float64)


def quantize(w, group, sym, scale_dtype):
    """Min-max observer per row and group (group=None: one per row, the channel strategy).
    Symmetric: s = amax / 7.5, z = 0; asymmetric: s = (max - min) / 15 over a range that
    includes 0, z = round(-8 - min / s) in [-8, 7]. Codes q = clamp(round(w / s) + z, -8, 7) with the
    stored (rounded) scale. Returns signed codes [N, K], scales [N, G] as stored, signed zeros
    [N, G] (zeros for symmetric)."""
    n, k = w.shape
    g = k if group is None else group
    assert k % g == 0
    wg = w.reshape(n, k // g, g)
    if sym:
        s = np.abs(wg).max(axis=2) / 7.5
    else:
        lo, hi = np.minimum(wg.min(axis=2), 0), np.maximum(wg.max(axis=2), 0)
        s = (hi - lo) / 15.0
    if scale_dtype == F32:
        # clquant's int4 kernels read fp16 scales and take an F32 one only where fp16 holds it
        # exactly (docs/numerics.md); such values still test the F32 reading.
        s = s.astype(F16)
    s = s.astype(scale_dtype)
    s64 = s.astype(np.float64)
    z = np.zeros_like(s64) if sym else np.clip(np.round(-8 - lo / s64), -8, 7)
    q = np.clip(np.round(wg / s64[:, :, None]) + z[:, :, None], -8, 7)
    return q.reshape(n, k).astype(np.int8), s, z.astype(np.int8)


def pack_rows(v):
    """Signed 4-bit values [R, C] -> I32 [R, ceil(C/8)], packed along C; a ragged last word is
    padded with 0 nibbles after the offset, as compressed-tensors pads."""
    u = (v.astype(np.int64) + 8).astype(np.uint32)
    assert u.max() <= 15
    u = np.pad(u, ((0, 0), (0, -u.shape[1] % 8)))
    r, c = u.shape
    u = u.reshape(r, c // 8, 8)
    words = np.zeros((r, c // 8), np.uint32)
    for i in range(8):
        words |= u[:, :, i] << np.uint32(4 * i)
    return words.view(np.int32)


def ct_config(sym, group, k):
    weights = {"num_bits": 4, "type": "int", "symmetric": sym, "group_size": group,
               "strategy": "channel" if group is None else "group", "dynamic": False, "observer": "minmax"}
    qc = {
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": None,
                                      "output_activations": None, "format": "pack-quantized"}},
        "format": "pack-quantized",
        "global_compression_ratio": None,
        "ignore": ["lm_head"],
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": "0.20.1",
    }
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": k,
            "intermediate_size": N, "num_hidden_layers": 1, "torch_dtype": "bfloat16", "quantization_config": qc}


def write_checkpoint(d, q, s, z, sym, group, rng):
    n, k = q.shape
    t = {P + ".weight_packed": pack_rows(q), P + ".weight_scale": s,
         P + ".weight_shape": np.array([n, k], np.int64),
         "lm_head.weight": rng.standard_normal((16, k)).astype(BF16), "model.norm.weight": np.ones(k, BF16)}
    if not sym:
        t[P + ".weight_zero_point"] = pack_rows(z.T).T.copy()  # packed_dim=0: along N
    st_numpy.save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(ct_config(sym, group, k), indent=2, sort_keys=True))
    return {name: dt for name, (_, dt) in read_safetensors(d / "model.safetensors").items()}


# ---- the reference side: unpack the stored tensors and dequantize in fp64 --------------------

def unpack_rows(words, cols, order=range(8)):
    """I32 [R, W] packed along the columns -> stored unsigned nibbles [R, cols]; `order` gives the
    nibble index of element i in each word (reversed = a wrong reading)."""
    w = np.ascontiguousarray(words).view(np.uint32)
    out = np.stack([(w >> np.uint32(4 * j)) & np.uint32(0xF) for j in order], axis=-1)
    return out.reshape(w.shape[0], -1)[:, :cols].astype(np.int64)


def dequant(packed, scale, zp, k, group, order=range(8), zp_reading="n", offset=8, zshift=0):
    """W [N, K] in fp64 = (q - z) * s from the stored tensors. zp_reading: "n" (along N, as
    written), "gptq" (the memory taken as GPTQ's [G, N/8] layout), "reversed" (nibbles of the
    zero words reversed), "none" (zero point ignored); zshift adds to every zero (a wrong reading)."""
    n = packed.shape[0]
    q = unpack_rows(packed, k, order) - offset
    s = scale.astype(np.float64)
    G = s.shape[1]
    if zp is None or zp_reading == "none":
        z = np.zeros((n, G))
    elif zp_reading == "n":
        z = unpack_rows(zp.T, n).T - 8
    elif zp_reading == "reversed":
        z = unpack_rows(zp.T, n, order=range(7, -1, -1)).T - 8
    elif zp_reading == "gptq":
        z = (unpack_rows(np.ascontiguousarray(zp).reshape(G, -1), n) - 8).T
    z = z + zshift
    g = k if group is None else group
    cols = np.arange(k) // g
    return (q - z[:, cols]) * s[:, cols]


def rel_err(y, ref):
    y = np.asarray(y).astype(np.float64)
    assert np.isfinite(y).all(), "NaN or Inf in the output"
    return np.abs(y - ref).mean() / np.abs(ref).mean()


def check(y, ref, dtype):
    """SPEC section 6: the reference rounded once to the output dtype, then the mean relative error."""
    assert y.dtype == dtype and y.shape == ref.shape
    assert np.abs(ref).mean() > 0.1, "degenerate reference"
    err = rel_err(y, ref.astype(dtype).astype(np.float64))
    assert err < TOL, f"mean relative error {err:.3e} >= {TOL}"
    return err


def activations(rng, k, dtype=BF16, rows=M):
    x = rng.standard_normal((rows, k))
    x[:, rng.integers(0, k, 3)] *= 8
    return x.astype(dtype)


# ---- the cases ------------------------------------------------------------------------------

# (name, K, group (None = channel), symmetric, scale dtype). K = 352 is 11 groups of 32, not a
# multiple of 128; K = 344 is 43 words, a multiple of neither 16 nor 32.
CASES = [
    ("group_sym", 384, 128, True, BF16),
    ("group_asym", 352, 32, False, F16),
    ("channel_sym", 384, None, True, F32),
    ("channel_asym", 344, None, False, BF16),
]


def build(tmp_path, K, group, sym, sdt, seed):
    rng = np.random.default_rng(seed)
    q, s, z = quantize(bf16_weights(rng, N, K), group, sym, sdt)
    assert len(np.unique(q)) == 16, "the codes should span all 16 values"
    if not sym:
        assert len(np.unique(z)) > 4 and (z != 0).any(), "zero points should vary"
    dtypes = write_checkpoint(tmp_path, q, s, z, sym, group, rng)
    st = {name: a for name, (a, _) in read_safetensors(tmp_path / "model.safetensors").items()}
    packed, zp = st[P + ".weight_packed"], st.get(P + ".weight_zero_point")
    G = K // (group or K)
    assert packed.shape == (N, K // 8) and dtypes[P + ".weight_packed"] == "I32"
    assert st[P + ".weight_scale"].shape == (N, G)
    assert dtypes[P + ".weight_scale"] == {BF16: "BF16", F16: "F16", F32: "F32"}[sdt]
    assert dtypes[P + ".weight_shape"] == "I64" and list(st[P + ".weight_shape"]) == [N, K]
    assert (zp is None) == sym and (sym or (zp.shape == (-(-N // 8), G) and dtypes[P + ".weight_zero_point"] == "I32"))
    W = dequant(packed, s, zp, K, group)
    # The reading round-trips the writer: the signed codes and zeros come back exactly.
    zcols = z.astype(np.float64)[:, np.arange(K) // (group or K)]
    np.testing.assert_array_equal(W, (q - zcols) * s.astype(np.float64)[:, np.arange(K) // (group or K)])
    return rng, packed, s, zp, W


@pytest.mark.parametrize("name,K,group,sym,sdt", CASES, ids=[c[0] for c in CASES])
def test_pack_quantized_int4(tmp_path, name, K, group, sym, sdt):
    rng, packed, s, zp, W = build(tmp_path, K, group, sym, sdt, seed=100 + [c[0] for c in CASES].index(name))
    layer = clquant.Linear.from_checkpoint(tmp_path, P)
    assert (layer.K, layer.N) == (K, N)
    for dtype, rows in ((BF16, M), (F16, 33)):
        x = activations(rng, K, dtype, rows)
        y = layer(x)
        print(f"{name}: {dtype} M={rows}: error {check(y, x.astype(np.float64) @ W.T, dtype):.3e}")
    # Wrong readings of the same files give other numbers: each is far outside the tolerance.
    xs = x.astype(np.float64)
    wrong = {"nibbles reversed": dequant(packed, s, zp, K, group, order=range(7, -1, -1)),
             "no +8 offset": dequant(packed, s, zp, K, group, offset=0),
             "zero off by one (GPTQ v1's rule)": dequant(packed, s, zp, K, group, zshift=1)}
    if not sym:
        wrong["zero point ignored"] = dequant(packed, s, zp, K, group, zp_reading="none")
        wrong["zero point nibbles reversed"] = dequant(packed, s, zp, K, group, zp_reading="reversed")
        if group is not None:  # with one group, [N/8, 1] and [1, N/8] are the same bytes
            wrong["zero point as GPTQ [G, N/8]"] = dequant(packed, s, zp, K, group, zp_reading="gptq")
    for what, Wx in wrong.items():
        e = rel_err(y, xs @ Wx.T)
        print(f"{name}: {what}: error {e:.3e}")
        assert e > 3 * TOL, f"{what}: error {e:.3e} is not > 3x the tolerance: the test cannot tell"


def test_cli_gemm_check(tmp_path, run_cli):
    """`clquant gemm --check` on the group-asymmetric checkpoint and an input written by
    safetensors.numpy; the output file also meets the independent reference."""
    _, K, group, sym, sdt = CASES[1]
    rng, packed, s, zp, W = build(tmp_path, K, group, sym, sdt, seed=200)
    x = activations(rng, K)
    st_numpy.save_file({"input": x}, str(tmp_path / "x.safetensors"))
    run_cli("gemm", "--weights", tmp_path, "--prefix", P, "--input", tmp_path / "x.safetensors", "--output",
            tmp_path / "y.safetensors", "--check")
    y, dt = read_safetensors(tmp_path / "y.safetensors")["output"]
    assert dt == "BF16"
    y = y.view(BF16)
    check(y, x.astype(np.float64) @ W.T, BF16)
    assert rel_err(y, x.astype(np.float64) @ dequant(packed, s, zp, K, group, zp_reading="gptq").T) > 3 * TOL


def test_ignored_layer_is_refused(tmp_path):
    """A layer the config lists under `ignore` is not read as quantized even if packed tensors exist."""
    _, K, group, sym, sdt = CASES[0]
    build(tmp_path, K, group, sym, sdt, seed=300)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["quantization_config"]["ignore"].append(P)
    (tmp_path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    with pytest.raises(clquant.Error, match="ignore"):
        clquant.Linear.from_checkpoint(tmp_path, P)


def test_f32_scale_beyond_fp16_is_refused(tmp_path):
    """The documented limit: an F32 scale fp16 cannot hold exactly is refused by name (NotSupported),
    not rounded silently."""
    rng = np.random.default_rng(400)
    q, s, z = quantize(bf16_weights(rng, N, 384), 128, True, F32)
    s = s.copy()
    s[3, 1] = np.float32(0.1)  # 0.1 has more mantissa bits than fp16's 11
    write_checkpoint(tmp_path, q, s, z, True, 128, rng)
    with pytest.raises(clquant.Error, match=r"weight_scale.*\[3\]\[1\].*not exactly representable in fp16"):
        clquant.Linear.from_checkpoint(tmp_path, P)


@pytest.mark.parametrize("n,k,group,sym,rule", [
    (204, 384, 128, False, r"N = 204 must both be multiples of 8"),
    (200, 340, None, True, r"weight_shape' says \[200, 340\].*holds \[200, 344\]")],
    ids=["N_204_asym", "K_340_channel"])
def test_sizes_compressed_tensors_pads_are_refused(tmp_path, n, k, group, sym, rule):
    """compressed-tensors pads a ragged last word (K, or N for the zero points) and keeps the true
    shape in weight_shape; clquant needs K and N multiples of 8 (SPEC section 2) and says so
    instead of reading the padding as weights."""
    rng = np.random.default_rng(500)
    w = bf16_weights(rng, n, k)
    q, s, z = quantize(w, group, sym, BF16)
    write_checkpoint(tmp_path, q, s, z, sym, group, rng)
    st = read_safetensors(tmp_path / "model.safetensors")
    assert st[P + ".weight_packed"][0].shape == (n, -(-k // 8))
    if not sym:
        assert st[P + ".weight_zero_point"][0].shape == (-(-n // 8), k // group)
    with pytest.raises(clquant.Error, match=rule):
        clquant.Linear.from_checkpoint(tmp_path, P)
