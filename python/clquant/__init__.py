"""clquant: quantized LLM kernels (int4 W4A16, FP8 W8A8, fused MoE) on any OpenCL device.

    import clquant, numpy as np
    print(clquant.devices())
    layer = clquant.Linear.from_checkpoint("ckpt/", "model.layers.0.mlp.down_proj")
    y = layer(np.random.rand(4, layer.K).astype(np.float16))    # [4, N] float16
    clquant.inspect("ckpt/")                                     # every layer, as dicts
    assert clquant.verify("ckpt/").ok                            # every layer against fp64

Inputs are 2-D numpy arrays of float16, float32 or (with ml_dtypes installed) bfloat16; the
output has the input's dtype. Errors from the library raise clquant.Error, whose message starts
with the status name ("[InvalidShape] ..."). A device is opened once per selector and shared by
the layers on it; calls from several threads take turns on that device.
"""
import json as _json

import numpy as _np

from . import _clquant

Error = _clquant.Error
__version__ = _clquant.version()
git_revision = _clquant.git_revision()

try:  # bfloat16 arrays are ml_dtypes' dtype; without it only float16/float32 are accepted
    import ml_dtypes as _ml_dtypes

    _BF16 = _np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BF16 = None

_F32, _F16, _BF16_CODE = 0, 1, 2
_contexts = {}


def _selector(device):
    if device is None:
        return ""
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise TypeError(f"device must be None, an index or a name substring, not {type(device).__name__}")
    return str(device)


def _context(device):
    key = _selector(device)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _clquant.Context.open(key)
        _contexts[key] = ctx
    return ctx


def devices():
    """Every OpenCL device of every platform, as a list of dicts (index order)."""
    return _json.loads(_clquant.devices_json())


def capabilities(device=None):
    """The device's features, the kernel variant chosen per op and the support matrix, as a dict
    (the same content as `clquant caps --json`)."""
    return _json.loads(_context(device).capabilities_json())


def _prepare(x, what="x"):
    """A C-contiguous 2-D array, its raw 16/32-bit view and clquant's dtype code."""
    x = _np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D [rows, features], has shape {x.shape}")
    x = _np.ascontiguousarray(x)
    if x.dtype == _np.float32:
        return x, x, _F32
    if x.dtype == _np.float16:
        return x, x.view(_np.uint16), _F16
    if _BF16 is not None and x.dtype == _BF16:
        return x, x.view(_np.uint16), _BF16_CODE
    allowed = "float16, float32" + (", bfloat16" if _BF16 is not None else " (bfloat16 needs ml_dtypes)")
    raise TypeError(f"{what} has dtype {x.dtype}; clquant takes {allowed}")


def _empty_like_rows(x, rows, cols):
    y = _np.empty((rows, cols), dtype=x.dtype)
    return y, (y.view(_np.uint16) if x.dtype.itemsize == 2 else y)


class Linear:
    """A quantized linear layer y = x @ W (GPTQ v1/v2, AWQ or compressed-tensors int4; GPTQ 8-bit or
    compressed-tensors int8 weight-only, the width from the config or the tensors; FP8 e4m3 block or
    per-tensor)."""

    def __init__(self, native):
        self._native = native

    @classmethod
    def from_checkpoint(cls, path, prefix, device=None, format=None, group_size=0, quantize=None, asym=False):
        """Loads `prefix` from a .safetensors file, a sharded model.safetensors.index.json, or a
        folder holding either. The int4 format comes from `format` ("gptq", "gptq_v2", "awq"),
        else quantize_config.json / config.json beside the weights, else the tensor shapes where
        they decide it; GPTQ v1 and v2 cannot be told apart by shapes and are refused.

        quantize="int4" | "int8" | "fp8-block" instead takes the dense (fp16/bf16/fp32)
        prefix.weight and quantizes it at load on the device (round to nearest; group_size 0 means
        128 for the integer methods, -1 one group per row; asym=True for zero points); the layer
        then runs the matching method and `quant_error` holds (rel Frobenius error, max abs error)."""
        if quantize is not None:
            native = _clquant.Linear(_context(device), str(path), prefix, format or "", int(group_size), str(quantize),
                                     bool(asym))
        else:
            native = _clquant.Linear(_context(device), str(path), prefix, format or "", int(group_size))
        return cls(native)

    K = property(lambda self: self._native.K, doc="input features")
    N = property(lambda self: self._native.N, doc="output features")
    description = property(lambda self: self._native.description)
    last_variant = property(lambda self: self._native.last_variant, doc="kernel variant of the last call")
    quant_error = property(lambda self: self._native.quant_error,
                           doc="(rel Frobenius error, max abs error) of a layer quantized at load, else None")

    def __call__(self, x):
        x, raw, code = _prepare(x)
        if x.shape[1] != self.K:
            raise ValueError(f"x has shape {x.shape}; this layer takes [M, {self.K}]")
        y, yraw = _empty_like_rows(x, x.shape[0], self.N)
        self._native.run(raw, code, yraw, code, x.shape[0])
        return y

    def __repr__(self):
        return f"clquant.Linear(K={self.K}, N={self.N}, {self.description})"


class MoE:
    """A fused mixture-of-experts block: routing, expert GEMMs with SwiGLU, weighted combine."""

    def __init__(self, native, routing):
        self._native = native
        self._routing = routing

    @classmethod
    def from_checkpoint(cls, path, prefix, top_k=None, device=None, format=None, group_size=0, renormalize=None,
                        routing=None, n_group=None, topk_group=None, routed_scaling=None, scoring=None):
        """Loads prefix.gate.weight and prefix.experts.{e}.{gate,up,down}_proj (dense, int4 or block
        FP8 experts), and the shared experts when present (DeepSeek-V3 prefix.shared_experts,
        Qwen2-MoE prefix.shared_expert gated by prefix.shared_expert_gate), which every call adds.
        The routing comes from config.json beside the weights when it names a model family (Mixtral,
        Qwen2/3-MoE, DeepSeek-V2/V3: `config_routing`), and every argument given here overrides it;
        without a config the defaults are softmax top-k without renormalisation, and top_k must be
        given. routing="softmax" (Mixtral, Qwen-MoE) or "grouped" (DeepSeek-V3 noaux_tc, with n_group,
        topk_group, routed_scaling and scoring "sigmoid" or "softmax")."""
        native = _clquant.MoE(_context(device), str(path), prefix, format or "", int(group_size))
        settings = {"top_k": None, "renormalize": False, "routing": "softmax", "n_group": 1, "topk_group": 1,
                    "routed_scaling": 1.0, "scoring": "sigmoid"}
        cfg = native.config_routing()
        if cfg is not None:
            settings.update({k: v for k, v in cfg.items() if k in settings and v is not None})
        given = {"top_k": top_k, "renormalize": renormalize, "routing": routing, "n_group": n_group,
                 "topk_group": topk_group, "routed_scaling": routed_scaling, "scoring": scoring}
        settings.update({k: v for k, v in given.items() if v is not None})
        if settings["top_k"] is None:
            raise ValueError("top_k is needed: the checkpoint has no config.json naming num_experts_per_tok")
        if settings["routing"] not in ("softmax", "grouped"):
            raise ValueError(f"routing must be 'softmax' or 'grouped', not {settings['routing']!r}")
        if settings["scoring"] not in ("sigmoid", "softmax"):
            raise ValueError(f"scoring must be 'sigmoid' or 'softmax', not {settings['scoring']!r}")
        r = (int(settings["top_k"]), bool(settings["renormalize"]), settings["routing"] == "grouped",
             int(settings["n_group"]), int(settings["topk_group"]), float(settings["routed_scaling"]),
             settings["scoring"] == "softmax")
        moe = cls(native, r)
        moe.routing = settings
        return moe

    def config_routing(self):
        """The routing config.json gives this block's model family (a dict), or None."""
        return self._native.config_routing()

    E = property(lambda self: self._native.E, doc="experts")
    H = property(lambda self: self._native.H, doc="hidden size")
    I = property(lambda self: self._native.I, doc="intermediate size")  # noqa: E741
    kind = property(lambda self: self._native.kind)
    shared_I = property(lambda self: self._native.shared_I, doc="shared experts' intermediate size (0: none)")
    shared_gated = property(lambda self: self._native.shared_gated, doc="Qwen2-MoE sigmoid-gated shared expert")

    def __call__(self, x):
        x, raw, code = _prepare(x)
        if x.shape[1] != self.H:
            raise ValueError(f"x has shape {x.shape}; this block takes [T, {self.H}]")
        y, yraw = _empty_like_rows(x, x.shape[0], self.H)
        self._native.run(raw, code, yraw, code, x.shape[0], *self._routing)
        return y

    def __repr__(self):
        shared = f", shared I={self.shared_I}{' gated' if self.shared_gated else ''}" if self.shared_I else ""
        return f"clquant.MoE(E={self.E}, H={self.H}, I={self.I}, {self.kind} experts{shared})"


def quantize(input, output, method, group_size=0, asym=False, layers=None, force=False, device=None,
             max_shard_size="5GB"):
    """Online quantization of a dense checkpoint (`clquant quantize`): writes output/model.safetensors
    and output/config.json as compressed-tensors pack-quantized (method "int4", "int8") or Hugging
    Face block FP8 ("fp8-block"). layers: a regular expression searched in layer names (default:
    every 2-D *.weight except embeddings, lm_head, norms and routers). output must be a new or empty
    folder unless force=True. max_shard_size (bytes as an int, or a string such as "5GB", "500MiB",
    as transformers' save_pretrained takes it): past it the weights are written as
    model-00001-of-0000N.safetensors ... with model.safetensors.index.json. Returns the report:
    per-layer and overall rel_fro_error / max_abs_error, the shards and total_size."""
    if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, (int, str)):
        raise TypeError(f"max_shard_size takes an int (bytes) or a string like '5GB', not {type(max_shard_size).__name__}")
    report = _clquant.quantize_checkpoint(_context(device), str(input), str(output), str(method), int(group_size),
                                          bool(asym), layers or "", bool(force), str(max_shard_size))
    return _json.loads(report)


def inspect(path, device=None, format=None, group_size=0):
    """Every quantized linear layer and MoE block of a checkpoint (a .safetensors file, a sharded
    model.safetensors.index.json or their folder), in model order: one dict per layer with prefix,
    kind ("linear" or "moe"), format, K and N (or E, H, I, shared_I), group_size, bytes, the op
    whose capability-table rows run it ("w8a16_int8_gemm") and the variant {"decode", "prefill"}
    of those rows that would run it on `device` (M=1 / M=512), the same rows as
    `clquant inspect --json`. A layer the loader refuses is listed with "error": {"status",
    "message"}; a checkpoint that cannot be opened raises clquant.Error."""
    return _json.loads(_clquant.inspect_json(_context(device), str(path), format or "", int(group_size)))["layers"]


class VerifyReport:
    """What verify() found: `ok` (every layer passed), `layers` (one dict per layer as
    `clquant verify --json` writes it: prefix, kind, ok, rel_err, max_abs_err, nan, tolerance,
    variant_ran, ms, and error when it did not run), `failed` (the prefixes of the layers that
    failed), `worst_rel_err`, `worst_abs_err`, `worst_layer`, `seconds`, `path`, `device`."""

    def __init__(self, report):
        self._report = report
        self.ok = report["ok"]
        self.layers = report["layers"]
        self.failed = [layer["prefix"] for layer in self.layers if not layer["ok"]]
        self.worst_rel_err = report["worst_rel_err"]
        self.worst_abs_err = report["worst_abs_err"]
        self.worst_layer = report["worst_layer"]
        self.seconds = report["seconds"]
        self.path = report["path"]
        self.device = report["device"]

    def as_dict(self):
        """The whole report as `clquant verify --json` prints it."""
        return _json.loads(_json.dumps(self._report))

    def __repr__(self):
        state = "ok" if self.ok else "FAILED: " + ", ".join(self.failed)
        return (f"clquant.VerifyReport({len(self.layers)} layers, {state}; worst rel err "
                f"{self.worst_rel_err:.2e} ({self.worst_layer or '-'}))")


def verify(path, layers=None, progress=None, device=None, tokens=5, seed=1, format=None, group_size=0):
    """Runs every quantized linear layer and MoE block of a checkpoint once on `tokens` rows of
    seeded random bf16 activations against its fp64 host reference (the tolerances of
    docs/numerics.md), one layer on the device at a time, and returns a VerifyReport; a layer
    that fails (by its numbers, or refused by the loader) is in `report.failed`, and
    `report.ok` is False. `layers` is a regular expression searched in each prefix (None: every
    layer). `progress(index, total, prefix, row)` is called before each layer (row None) and after
    it (row: that layer's dict). A checkpoint that cannot be opened, a malformed regex or one
    that matches no layer, and tokens outside [1, 4096] raise clquant.Error."""
    if layers is not None and not isinstance(layers, str):
        raise TypeError(f"layers must be None or a regular expression string, not {type(layers).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or callable, not {type(progress).__name__}")
    for name, v in (("tokens", tokens), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if seed < 0 or seed >= 2**64:
        raise ValueError(f"seed = {seed} must be in [0, 2**64)")
    if tokens < 1 or tokens > 4096:  # checked again by the library; here before the int64 conversion
        raise Error(f"[InvalidArgument] tokens = {tokens} must be in [1, 4096]")

    def rows(index, total, prefix, row):
        progress(index, total, prefix, None if row is None else _json.loads(row))

    report = _clquant.verify_json(_context(device), str(path), layers or "", int(tokens), int(seed), format or "",
                                  int(group_size), rows if progress is not None else None)
    return VerifyReport(_json.loads(report))


__all__ = ["Error", "Linear", "MoE", "VerifyReport", "capabilities", "devices", "git_revision", "inspect", "quantize",
           "verify", "__version__"]
