"""One quantized linear layer from Python: load it, run it in float32 and float16, compare.

    python examples/python/linear_layer.py CKPT PREFIX [DEVICE]

CKPT is a .safetensors file, a model.safetensors.index.json or a folder holding either (for
example one written by build/tests/gen_checkpoint); PREFIX names the layer.
"""
import sys
import time

import numpy as np

import clquant


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        return 2
    device = sys.argv[3] if len(sys.argv) == 4 else None
    print(f"clquant {clquant.__version__} ({clquant.git_revision})")
    for i, d in enumerate(clquant.devices()):
        print(f"  device {i}: {d['device']}")
    layer = clquant.Linear.from_checkpoint(sys.argv[1], sys.argv[2], device=device)
    print(layer)
    x = np.random.default_rng(0).uniform(-1, 1, (4, layer.K)).astype(np.float32)
    t0 = time.perf_counter()
    y32 = layer(x)
    t1 = time.perf_counter()
    y16 = layer(x.astype(np.float16))
    rel = np.abs(y16.astype(np.float32) - y32).mean() / np.abs(y32).mean()
    print(f"y {y32.shape} float32 in {1e3 * (t1 - t0):.2f} ms (variant {layer.last_variant}); "
          f"float16 vs float32 rel err {rel:.2e}")
    return 0 if rel < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
