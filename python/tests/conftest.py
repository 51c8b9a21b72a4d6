"""Test data comes from the C++ build's generator (tests/gen_checkpoint) and outputs are compared
with the `clquant` command line on the same files. CLQ_BUILD_DIR names that build (default:
build/ of this checkout); a missing build fails the tests rather than skipping them."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CLQ_BUILD_DIR", ROOT / "build"))

ST_DTYPES = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16, "F8_E4M3": np.uint8, "I32": np.int32,
             "I64": np.int64}


def read_safetensors(path):
    """Tensors of a safetensors file as numpy arrays (BF16 as raw uint16)."""
    data = pathlib.Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = (np.frombuffer(data[8 + n + b:8 + n + e], dtype=ST_DTYPES[t["dtype"]]).reshape(t["shape"]),
                     t["dtype"])
    return out


@pytest.fixture(scope="session")
def tools():
    gen, cli = BUILD / "tests" / "gen_checkpoint", BUILD / "tools" / "clquant"
    for p in (gen, cli):
        if not p.exists():
            pytest.fail(f"{p} not found: build the C++ project first (tools/setup) or set CLQ_BUILD_DIR")
    return gen, cli


@pytest.fixture
def make_checkpoint(tools, tmp_path):
    """gen_checkpoint DIR FORMAT K N GROUP ACT M DTYPE SEED [noconfig] -> the folder."""
    gen, _ = tools

    def make(*args):
        d = tmp_path / "_".join(str(a) for a in args)
        d.mkdir()
        subprocess.run([str(gen), str(d), *map(str, args)], check=True)
        return d

    return make


@pytest.fixture
def run_cli(tools):
    _, cli = tools

    def run(*args):
        r = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 0, f"clquant {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr}"
        return r.stderr

    return run
