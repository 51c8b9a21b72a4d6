"""Sharded output of clquant.quantize read by an independent reader, the `safetensors` package
(its numpy API), as transformers and vLLM read a sharded checkpoint: every name of the index's
weight_map lies in exactly the shard it names, metadata.total_size is the tensors' bytes, and the
tensors equal the single-file output's."""
import json

import numpy as np
import pytest

import clquant

import safetensors  # noqa: E402  (missing packages fail: tools/test installs them)
import safetensors.numpy as st_numpy  # noqa: E402

ITEMSIZE = {"F8_E4M3": 1, "I8": 1, "U8": 1, "F16": 2, "BF16": 2, "I16": 2, "F32": 4, "I32": 4, "I64": 8, "F64": 8}


def shard_contents(path):
    """name -> (dtype, shape) of a safetensors file, from the package's own header reader."""
    out = {}
    with safetensors.safe_open(str(path), framework="np") as f:
        for name in f.keys():
            s = f.get_slice(name)
            out[name] = (s.get_dtype(), tuple(s.get_shape()))
    return out


@pytest.mark.parametrize("method,asym", [("int4", False), ("int4", True), ("int8", False), ("fp8-block", False)])
def test_sharded_output_read_by_safetensors(make_checkpoint, tmp_path, method, asym):
    d = make_checkpoint("dense", 512, 264, 0, 0, 3, "bf16", 21)
    one = clquant.quantize(d, tmp_path / "one", method, asym=asym)
    assert one["shards"] == ["model.safetensors"] and one["weights"].endswith("/model.safetensors")
    assert not (tmp_path / "one" / "model.safetensors.index.json").exists()
    rep = clquant.quantize(d, tmp_path / "many", method, asym=asym, max_shard_size="40KB")
    out = tmp_path / "many"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    wm, total = index["weight_map"], index["metadata"]["total_size"]
    n = len(rep["shards"])
    assert n > 2
    assert rep["shards"] == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert sorted(set(wm.values())) == rep["shards"]
    assert sorted(p.name for p in out.iterdir()) == sorted(rep["shards"] + ["config.json", "model.safetensors.index.json"])
    single = shard_contents(tmp_path / "one" / "model.safetensors")
    assert sorted(wm) == sorted(single)
    seen, size = set(), 0
    for shard in rep["shards"]:
        contents = shard_contents(out / shard)
        assert contents, shard
        for name, (dtype, shape) in contents.items():
            assert wm[name] == shard, name  # exactly its shard
            assert name not in seen, name
            seen.add(name)
            assert (dtype, shape) == single[name], name
            size += ITEMSIZE[dtype] * int(np.prod(shape, dtype=np.int64))
        if method != "fp8-block":  # numpy has no e4m3; the shapes above cover it
            a = st_numpy.load_file(str(out / shard))
            b = st_numpy.load_file(str(tmp_path / "one" / "model.safetensors"))
            for name, v in a.items():
                np.testing.assert_array_equal(v.view(np.uint8), b[name].view(np.uint8), err_msg=name)
    assert seen == set(wm)
    assert total == size == rep["total_size"] == one["total_size"]
    assert (out / "config.json").read_text() == (tmp_path / "one" / "config.json").read_text()
    # clquant's own loader takes the folder by its index.
    assert clquant.Linear.from_checkpoint(out, "model.layers.0.mlp.down_proj").K == 512


def test_max_shard_size_forms(make_checkpoint, tmp_path):
    d = make_checkpoint("dense", 512, 264, 0, 0, 3, "bf16", 22)
    a = clquant.quantize(d, tmp_path / "a", "int8", max_shard_size=40_000)
    b = clquant.quantize(d, tmp_path / "b", "int8", max_shard_size="40kb")
    assert a["shards"] == b["shards"] and len(a["shards"]) > 1
    for bad, needle in [("12XB", "unknown unit 'XB'"), ("0", "must be at least 1 byte"), (-5, "is not a size"),
                        ("1.5GB", "unknown unit")]:
        with pytest.raises(clquant.Error, match=needle):
            clquant.quantize(d, tmp_path / "bad", "int8", max_shard_size=bad)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(TypeError):
        clquant.quantize(d, tmp_path / "bad", "int8", max_shard_size=1.5)
