"""GGUF layers written by an independent writer (gguf-py, PyPI `gguf`) and checked against its own
dequantize: the file, the block decoding and the GEMM are all someone else's reading of the
format, not ours. Runs through the Python package and through `clquant gemm`, every variant."""
import subprocess

import numpy as np
import pytest

import clquant
from conftest import read_safetensors

import gguf  # noqa: E402  (a missing gguf is a failure, not a skip: tools/test installs it)
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

TOL = 1e-3  # SPEC section 6: mean|y - ref| / mean|ref|


def random_blocks(qtype, n, k, rng):
    """Random codes with finite, realistic fp16 scales, for the types gguf-py cannot quantize."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n, k // block, nbytes), dtype=np.uint8)
    def put(off, scale):
        d = (scale * rng.uniform(0.5, 2.0, size=raw.shape[:2])).astype(np.float16)
        raw[:, :, off:off + 2] = d.view(np.uint8).reshape(raw.shape[0], raw.shape[1], 2)
    if qtype == Q.Q4_K:
        put(0, 0.002)
        put(2, 0.004)
    elif qtype == Q.Q6_K:
        put(208, 0.0005)
    return raw.reshape(n, -1)


def make_layer(tmp_path, qtype, n, k, seed):
    rng = np.random.default_rng(seed)
    if qtype in (Q.Q4_0, Q.Q8_0):
        w = rng.standard_normal((n, k)).astype(np.float32) * 0.05
        data = quantize(w, qtype)  # gguf-py's own quantizer (bit-exact with ggml's)
    else:
        data = random_blocks(qtype, n, k, rng)
    path = tmp_path / f"layer_{qtype.name}.gguf"
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_tensor("blk.0.ffn_down.weight", data, raw_dtype=qtype)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    wdq = dequantize(data, qtype).astype(np.float64)  # [n, k]
    assert wdq.shape == (n, k)
    return path, wdq


def write_input(path, x):
    import json
    header = json.dumps({"input": {"dtype": "F16", "shape": list(x.shape), "data_offsets": [0, x.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + x.tobytes())


def rel_err(y, ref):
    return np.abs(y.astype(np.float64) - ref).mean() / np.abs(ref).mean()


CASES = [(Q.Q4_0, 37, 96), (Q.Q8_0, 64, 160), (Q.Q4_K, 29, 512), (Q.Q6_K, 40, 768)]


@pytest.mark.parametrize("qtype,n,k", CASES, ids=[c[0].name for c in CASES])
@pytest.mark.parametrize("m", [1, 3, 33])
def test_gguf_python_api_matches_gguf_py(tmp_path, qtype, n, k, m):
    path, wdq = make_layer(tmp_path, qtype, n, k, seed=int(qtype) * 100 + m)
    layer = clquant.Linear.from_checkpoint(str(path), "blk.0.ffn_down")
    assert (layer.K, layer.N) == (k, n)
    assert qtype.name in layer.description
    x = np.random.default_rng(m).uniform(-1, 1, size=(m, k)).astype(np.float16)
    y = layer(x)
    ref = x.astype(np.float64) @ wdq.T
    assert not np.isnan(y).any()
    assert rel_err(y, ref) < TOL


@pytest.mark.parametrize("qtype,n,k", CASES, ids=[c[0].name for c in CASES])
@pytest.mark.parametrize("variant", ["gemv", "tiled"])
def test_gguf_cli_every_variant(tmp_path, tools, qtype, n, k, variant):
    _, cli = tools
    path, wdq = make_layer(tmp_path, qtype, n, k, seed=int(qtype))
    x = np.random.default_rng(5).uniform(-1, 1, size=(17, k)).astype(np.float16)
    write_input(tmp_path / "x.safetensors", x)
    out = tmp_path / "y.safetensors"
    r = subprocess.run([str(cli), "gemm", "--weights", str(path), "--prefix", "blk.0.ffn_down", "--input",
                        str(tmp_path / "x.safetensors"), "--output", str(out), "--variant", variant, "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # Q4_0 is a GPTQ group of 32 and runs through W4A16 (repacked at load); the rest natively.
    assert (f"w4a16_gemm/{variant}" if qtype == Q.Q4_0 else f"gguf_gemm/{variant}") in r.stderr
    y, dt = read_safetensors(out)["output"]
    assert dt == "F16"
    assert rel_err(y, x.astype(np.float64) @ wdq.T) < TOL


def test_gguf_given_as_activations_is_named(tmp_path, tools):
    _, cli = tools
    path, _ = make_layer(tmp_path, Q.Q8_0, 32, 64, seed=1)
    r = subprocess.run([str(cli), "gemm", "--weights", str(path), "--prefix", "blk.0.ffn_down", "--input", str(path),
                        "--output", str(tmp_path / "y.safetensors")], capture_output=True, text=True)
    assert r.returncode == 4, r.stderr
    assert "is a GGUF file" in r.stderr
