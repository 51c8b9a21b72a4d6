"""clquant.inspect / clquant.verify on the synthetic four-layer sharded model (GPTQ act-order,
compressed-tensors int4, block FP8, a MoE block with a gated shared expert), against what
`clquant inspect --json` / `clquant verify --json` print for the same files."""
import json
import subprocess

import pytest

import clquant

LAYERS = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.layers.2.mlp.gate_proj",
          "model.layers.3.mlp"]


@pytest.fixture
def model(tools, tmp_path):
    """gen_checkpoint model DIR [damage] -> DIR."""
    gen, _ = tools

    def make(damage=None):
        d = tmp_path / (damage or "clean")
        d.mkdir()
        subprocess.run([str(gen), "model", str(d)] + ([damage] if damage else []), check=True)
        return d

    return make


def cli_json(cli, *args):
    r = subprocess.run([str(cli), *map(str, args), "--json"], capture_output=True, text=True)
    return r.returncode, json.loads(r.stdout)


def test_inspect_matches_the_cli(model, tools):
    d = model()
    layers = clquant.inspect(d / "model.safetensors.index.json")
    assert [layer["prefix"] for layer in layers] == LAYERS
    q, ct, fp8, moe = layers
    assert (q["kind"], q["K"], q["N"], q["group_size"]) == ("linear", 512, 264, 128)
    assert "g_idx" in q["format"] and "compressed-tensors" in ct["format"] and "block" in fp8["format"]
    assert (moe["kind"], moe["E"], moe["H"], moe["I"], moe["shared_I"]) == ("moe", 8, 256, 128, 384)
    assert all(layer["bytes"] > 0 and "error" not in layer and layer["variant"]["decode"] for layer in layers)
    rc, ref = cli_json(tools[1], "inspect", d)
    assert rc == 0 and ref["layers"] == layers


def test_inspect_lists_a_refused_layer(model):
    layers = clquant.inspect(model("nan-scale"))
    assert len(layers) == 4
    assert layers[0]["error"]["status"] == "InvalidArgument"
    assert "q_proj.scales" in layers[0]["error"]["message"]
    assert all("error" not in layer for layer in layers[1:])


def test_verify_passes_with_progress(model, tools):
    d = model()
    calls = []
    rep = clquant.verify(d, progress=lambda i, n, prefix, row: calls.append((i, n, prefix, row)))
    assert isinstance(rep, clquant.VerifyReport)
    assert rep.ok and rep.failed == [] and [layer["prefix"] for layer in rep.layers] == LAYERS
    assert 0 < rep.worst_rel_err < 1e-3 and rep.worst_layer in LAYERS
    for layer in rep.layers:
        assert layer["ok"] and 0 < layer["rel_err"] < layer["tolerance"] and layer["nan"] == 0
        assert layer["variant_ran"]
    # Before and after each layer; after carries that layer's row.
    assert [(c[0], c[1], c[2]) for c in calls] == [(i // 2, 4, LAYERS[i // 2]) for i in range(8)]
    assert all(c[3] is None for c in calls[0::2])
    assert [c[3] for c in calls[1::2]] == rep.layers
    # The same seed gives the command line's numbers (the timings differ).
    rc, ref = cli_json(tools[1], "verify", d)
    assert rc == 0 and ref["ok"]
    for mine, cli in zip(rep.layers, ref["layers"]):
        assert (mine["prefix"], mine["rel_err"], mine["max_abs_err"]) == (cli["prefix"], cli["rel_err"],
                                                                         cli["max_abs_err"])
    one = clquant.verify(d, layers=r"mlp$", tokens=3, seed=7)
    assert one.ok and [layer["prefix"] for layer in one.layers] == ["model.layers.3.mlp"]
    assert "1 layers, ok" in repr(one)


def test_verify_names_a_corrupted_layer(model):
    rep = clquant.verify(model("huge-scale"))
    assert not rep.ok and rep.failed == ["model.layers.2.mlp.gate_proj"]
    broken = rep.layers[2]
    # The overflowed weights give a non-finite error, which JSON writes as null.
    assert not broken["ok"] and (broken["rel_err"] is None or broken["rel_err"] >= broken["tolerance"]
                                 or broken["nan"] > 0)
    assert "FAILED: model.layers.2.mlp.gate_proj" in repr(rep)
    refused = clquant.verify(model("nan-scale"))
    assert refused.failed == ["model.layers.0.self_attn.q_proj"]
    assert refused.layers[0]["error"].startswith("[InvalidArgument]") and "scales" in refused.layers[0]["error"]
    assert refused.as_dict()["failed"] == 1


def test_verify_and_inspect_refuse_bad_input(model, tmp_path):
    d = model()
    with pytest.raises(clquant.Error, match=r"\[IoError\].*missing"):
        clquant.verify(tmp_path / "missing")
    with pytest.raises(clquant.Error, match=r"\[IoError\].*missing"):
        clquant.inspect(tmp_path / "missing")
    with pytest.raises(clquant.Error, match=r"\[InvalidArgument\] layer pattern '\(' is not a regular expression"):
        clquant.verify(d, layers="(")
    with pytest.raises(clquant.Error, match=r"\[InvalidArgument\] no layer matches 'nope' \(4 layers"):
        clquant.verify(d, layers="nope")
    with pytest.raises(clquant.Error, match=r"tokens = 0 must be in \[1, 4096\]"):
        clquant.verify(d, tokens=0)
    with pytest.raises(TypeError, match="layers must be None or a regular expression"):
        clquant.verify(d, layers=3)
    with pytest.raises(TypeError, match="progress must be None or callable"):
        clquant.verify(d, progress="bar")
    with pytest.raises(ValueError, match="seed"):
        clquant.verify(d, seed=-1)


class Stop(Exception):
    pass


def test_an_exception_in_progress_stops_verify(model):
    d = model()
    seen = []

    def stop(i, n, prefix, row):
        seen.append(prefix)
        if row is not None:
            raise Stop("enough")

    with pytest.raises(Stop, match="enough"):
        clquant.verify(d, progress=stop)
    assert seen == [LAYERS[0], LAYERS[0]]
    assert clquant.verify(d, layers="layers\\.1\\.").ok  # the device is usable afterwards
