#include "host/formats/loader.h"

#include <cstring>

#include "runtime/status.h"

namespace clq {

namespace {

// How to tell the reader to pass a value: "--format gptq", "format='gptq'" (Python) or
// "the format argument \"gptq\"" (C).
std::string spell(const LoadOptions& o, const std::string& value) {
  const std::string& f = o.format_option;
  if (!f.empty() && f.back() == '=') return f + "'" + value + "'";
  if (f.rfind("--", 0) == 0) return f + " " + value;
  return f + " \"" + value + "\"";
}

// What sits under a prefix, for the message when the expected tensors are not there.
std::string found_under(const Checkpoint& ck, const std::string& prefix) {
  auto names = ck.names_with_prefix(prefix + ".");
  if (names.empty()) return "no tensor name starts with '" + prefix + ".'";
  std::string s = "found under it: ";
  const size_t show = 6;
  for (size_t i = 0; i < names.size() && i < show; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > show) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

// A tensor the layer's format requires; its absence names what the prefix does hold.
const StTensor& require(const Checkpoint& ck, const std::string& prefix, const std::string& suffix,
                        const char* because) {
  if (const StTensor* t = ck.find(prefix + suffix)) return *t;
  fail(Status::kFormatError,
       "checkpoint has no tensor '" + prefix + suffix + "', which " + because + " (" + found_under(ck, prefix) + ")");
}

std::optional<W4Format> explicit_format(const LoadOptions& opt) {
  if (opt.format.empty()) return std::nullopt;
  W4Format f;
  if (!w4_format_from_name(opt.format, &f))
    fail(Status::kInvalidArgument, opt.format_option + " '" + opt.format + "' is not one of gptq, gptq_v2, awq");
  return f;
}

// compressed-tensors `weight_packed`: 4 or 8 bits from the option, the config, else weight_shape
// (K / packed columns is the codes per word).
int ct_bits(const Checkpoint& ck, const std::string& P, const StTensor& packed, const LoadOptions& opt,
            const std::optional<QuantConfig>& cfg) {
  if (opt.bits) return opt.bits;
  if (cfg && cfg->format == W4Format::kCompressedTensors) return cfg->bits;
  const StTensor* ws = ck.find(P + ".weight_shape");
  if (ws && ws->shape.size() == 1 && ws->shape[0] == 2 && ws->dtype == StDType::kI64 && packed.shape.size() == 2) {
    int64_t nk[2];
    std::memcpy(nk, ws->data, 16);
    if (nk[1] == packed.shape[1] * 4) return 8;
  }
  return 4;
}

// A compressed-tensors integer layer whose quantized weight tensor is `weight` (`what` names it
// in messages): the ignore list, the format option, scales, zero points, g_idx and group size.
W4Layer ct_layer(const Checkpoint& ck, const std::string& P, const StTensor& weight, const std::string& what, int bits,
                 const LoadOptions& opt, const std::optional<QuantConfig>& cfg) {
  if (cfg && cfg->ignores(P))
    fail(Status::kInvalidArgument,
         "layer '" + P + "' has " + what + " but " + cfg->source + " lists it under 'ignore' (left unquantized)");
  if (auto f = explicit_format(opt); f && *f != W4Format::kCompressedTensors)
    fail(Status::kInvalidArgument, "layer '" + P + "' holds compressed-tensors tensors (" + what + "), not " +
                                       w4_format_name(*f) + " (" + opt.format_option + ")");
  W4Layer l;
  l.ck.format = W4Format::kCompressedTensors;
  l.ck.bits = bits;
  l.ck.qweight = &weight;
  l.ck.scales = &require(ck, P, ".weight_scale", "a compressed-tensors integer layer needs");
  l.ck.qzeros = ck.find(P + ".weight_zero_point");
  l.ck.g_idx = ck.find(P + ".weight_g_idx");
  if (cfg && cfg->symmetric && !*cfg->symmetric && !l.ck.qzeros)
    fail(Status::kFormatError, cfg->source + " says the weights are asymmetric, but '" + P +
                                   ".weight_zero_point' is missing");
  l.format_source = cfg && cfg->format == W4Format::kCompressedTensors ? cfg->source : "tensor names (" + what + ")";
  if (opt.group_size != 0)
    l.ck.group_size = opt.group_size;
  else if (cfg && cfg->group_size)
    l.ck.group_size = *cfg->group_size;
  l.shape = validate_w4(l.ck);
  l.w8a8 = bits == 8 && cfg && cfg->format == W4Format::kCompressedTensors && cfg->int8_act;
  return l;
}

Fp8Layer fp8_layer(const Checkpoint& ck, const std::string& P, const LoadOptions& opt) {
  if (!opt.format.empty())
    fail(Status::kInvalidArgument, opt.format_option + " names an int4 format, but '" + P + ".weight' is an FP8 layer");
  Fp8Layer l;
  l.ck.weight = &ck.require(P + ".weight");
  l.ck.weight_scale_inv = ck.find(P + ".weight_scale_inv");
  l.ck.weight_scale = ck.find(P + ".weight_scale");
  l.ck.input_scale = ck.find(P + ".input_scale");
  // compressed-tensors names its block scales weight_scale, [ceil(N/128), ceil(K/128)]: the same
  // numbers as DeepSeek-V3's weight_scale_inv ([N, 1] is per-channel and stays weight_scale).
  if (const StTensor* ws = l.ck.weight_scale; ws && !l.ck.weight_scale_inv && ws->shape.size() == 2 &&
                                               l.ck.weight->shape.size() == 2) {
    const int64_t N = l.ck.weight->shape[0], K = l.ck.weight->shape[1];
    const int64_t Nb = (N + kFp8Block - 1) / kFp8Block, Kb = (K + kFp8Block - 1) / kFp8Block;
    if (ws->shape[0] == Nb && ws->shape[1] == Kb && Nb * Kb > 1 && !(ws->shape[0] == N && ws->shape[1] == 1)) {
      l.ck.weight_scale_inv = ws;
      l.ck.weight_scale = nullptr;
    }
  }
  const auto cfg = read_quant_config(ck.dir());
  if (cfg && cfg->ignores(P))
    fail(Status::kInvalidArgument, "layer '" + P + "' holds FP8 weights but " + cfg->source +
                                       " lists it under 'ignore' (left unquantized)");
  l.ck.ue8m0_act_scales = cfg && cfg->scale_fmt == "ue8m0";
  l.shape = validate_fp8(l.ck);
  return l;
}

}  // namespace

W4Format decide_w4_format(const StTensor& qweight, const StTensor& scales, const std::string& P, const LoadOptions& opt,
                          const std::optional<QuantConfig>& cfg, std::string* source) {
  if (auto f = explicit_format(opt)) {
    *source = opt.format_option;
    return *f;
  }
  if (cfg && cfg->format) {
    *source = cfg->source;
    return *cfg->format;
  }
  const auto& qs = qweight.shape;
  const auto& ss = scales.shape;
  if (qs.size() == 2 && ss.size() == 2 && qs[1] * 8 == ss[1]) {
    *source = "shapes (qweight packed along N)";
    return W4Format::kAwq;
  }
  if (qs.size() == 2 && ss.size() == 2 && qs[1] == ss[1])
    fail(Status::kInvalidArgument,
         "'" + P + ".qweight' " + qweight.shape_str() +
             " is GPTQ-packed, but v1 (zero-1 stored) and v2 cannot be told apart by shapes: pass " +
             spell(opt, "gptq") + " or " + spell(opt, "gptq_v2") + ", or put quantize_config.json beside the weights" +
             (cfg ? " (" + cfg->source + " names no int4 format" +
                        (cfg->quant_method.empty() ? "" : ", quant_method '" + cfg->quant_method + "'") + ")"
                  : ""));
  fail(Status::kInvalidShape, "cannot recognise the int4 format from qweight " + qweight.shape_str() + " and scales " +
                                  scales.shape_str() + "; pass " + opt.format_option);
}

std::string LinearLayer::describe() const {
  if (is_gguf()) return std::string("gguf ") + ggml_type_name(gguf().type);
  if (!is_int4()) {
    const Fp8Shape& s = fp8().shape;
    const std::string ue8m0 = fp8().ck.ue8m0_act_scales ? ", ue8m0 activation scales" : "";
    if (s.channel)
      return std::string("fp8 e4m3 per-channel scales") + (s.input_scale ? ", static input_scale" : "") + ue8m0;
    return std::string("fp8 e4m3 ") + (s.block ? "128x128 block scales" : "per-tensor scale") + ue8m0;
  }
  const W4Layer& l = w4();
  return std::string(w4_format_name(l.ck.format)) + (l.w8a8 ? " W8A8 int8" : l.ck.bits == 8 ? " int8" : "") +
         " (from " + l.format_source + "), group " +
         std::to_string(l.shape.group_size) + (l.shape.has_g_idx ? ", g_idx" : "");
}

LinearLayer load_linear(const std::string& path, const std::string& prefix, const LoadOptions& opt) {
  return load_linear(std::make_shared<const Checkpoint>(Checkpoint::open(path)), prefix, opt);
}

LinearLayer load_linear(std::shared_ptr<const Checkpoint> ckp, const std::string& P, const LoadOptions& opt) {
  if (!ckp) fail(Status::kInvalidArgument, "load_linear: no checkpoint");
  const Checkpoint& ck = *ckp;
  LinearLayer out;
  out.checkpoint = ckp;
  out.prefix = P;
  if (const GgufFile* g = ck.gguf()) {
    // GGUF blocks carry their own format and group: the safetensors options do not apply.
    if (!opt.format.empty())
      fail(Status::kInvalidArgument, opt.format_option + " '" + opt.format +
                                         "' names a safetensors int4 format, but the checkpoint is a GGUF file");
    if (opt.group_size != 0)
      fail(Status::kInvalidArgument, "a group size does not apply to a GGUF file: its blocks fix their own");
    const GgufTensor* t = g->find(P + ".weight");
    if (!t)
      fail(Status::kFormatError, "GGUF file has no tensor '" + P + ".weight' (is " + opt.prefix_option + " right? " +
                                     found_under(ck, P) + ")");
    out.weights = validate_gguf_linear(*t);
    return out;
  }
  if (const StTensor* packed = ck.find(P + ".weight_packed")) {
    // compressed-tensors pack-quantized: the tensor names say the format.
    auto cfg = read_quant_config(ck.dir());
    W4Layer l = ct_layer(ck, P, *packed, "'.weight_packed'", ct_bits(ck, P, *packed, opt, cfg), opt, cfg);
    if (const StTensor* ws = ck.find(P + ".weight_shape")) {
      // The logical [N, K]; the packing rounds K up to whole words, so they must agree exactly here.
      if (ws->shape.size() != 1 || ws->shape[0] != 2 || (ws->dtype != StDType::kI64 && ws->dtype != StDType::kI32))
        fail(Status::kFormatError, "'" + ws->name + "' must be an I64 or I32 vector of 2 (N, K), not " +
                                       st_dtype_name(ws->dtype) + " " + ws->shape_str());
      int64_t nk[2];
      for (int i = 0; i < 2; ++i) {
        if (ws->dtype == StDType::kI64) {
          std::memcpy(&nk[i], ws->data + 8 * i, 8);
        } else {
          int32_t v;
          std::memcpy(&v, ws->data + 4 * i, 4);
          nk[i] = v;
        }
      }
      if (nk[0] != l.shape.N || nk[1] != l.shape.K)
        fail(Status::kInvalidShape, "'" + ws->name + "' says [" + std::to_string(nk[0]) + ", " + std::to_string(nk[1]) +
                                        "], but '" + packed->name + "' " + packed->shape_str() + " holds [" +
                                        std::to_string(l.shape.N) + ", " + std::to_string(l.shape.K) +
                                        "] (K must be a multiple of " + std::to_string(32 / l.ck.bits) + ")");
    }
    out.weights = std::move(l);
    return out;
  }
  const StTensor* qweight = ck.find(P + ".qweight");
  if (!qweight) {
    const StTensor* dense = ck.find(P + ".weight");
    if (dense && dense->dtype == StDType::kI8) {
      // compressed-tensors int-quantized: `weight` I8 [N, K], `weight_scale` [N, 1] (per channel)
      // or [N, G], `weight_zero_point` I8 [N, G] when asymmetric.
      if (opt.bits && opt.bits != 8)
        fail(Status::kInvalidArgument, "layer '" + P + "' holds an I8 '.weight': its codes are 8-bit, not " +
                                           std::to_string(opt.bits));
      out.weights = ct_layer(ck, P, *dense, "an I8 '.weight'", 8, opt, read_quant_config(ck.dir()));
      return out;
    }
    if (dense && (dense->dtype == StDType::kF8E4M3 || dense->dtype == StDType::kF8E5M2)) {
      out.weights = fp8_layer(ck, P, opt);
      return out;
    }
    if (dense)
      fail(Status::kNotSupported, "layer '" + P + "' holds a " + std::string(st_dtype_name(dense->dtype)) +
                                      " '.weight': clquant runs int4 (GPTQ/AWQ) and FP8 layers");
    fail(Status::kFormatError, "checkpoint has no tensor '" + P + ".qweight' or '" + P + ".weight' (is " +
                                   opt.prefix_option + " right? " + found_under(ck, P) + ")");
  }
  W4Layer l;
  l.ck.qweight = qweight;
  l.ck.qzeros = &require(ck, P, ".qzeros", "an int4 layer with a '.qweight' needs");
  l.ck.scales = &require(ck, P, ".scales", "an int4 layer with a '.qweight' needs");
  l.ck.g_idx = ck.find(P + ".g_idx");
  // The config is read only for int4 layers: an FP8 checkpoint's config holds nothing we use.
  auto cfg = read_quant_config(ck.dir());
  l.ck.format = decide_w4_format(*l.ck.qweight, *l.ck.scales, P, opt, cfg, &l.format_source);
  // GPTQ 4- and 8-bit files have the same tensor names and shapes of the same rank: the width
  // comes from the option or the config (`bits`), never from a guess.
  l.ck.bits = opt.bits ? opt.bits : cfg ? cfg->bits : 4;
  if (l.ck.format == W4Format::kAwq) l.ck.g_idx = nullptr;  // AWQ files carry no g_idx; a stray one is ignored
  if (opt.group_size != 0)
    l.ck.group_size = opt.group_size;
  else if (cfg && cfg->group_size)
    l.ck.group_size = *cfg->group_size;
  l.shape = validate_w4(l.ck);
  out.weights = std::move(l);
  return out;
}

MoeLayer load_moe(const std::string& path, const std::string& prefix, const LoadOptions& opt) {
  return load_moe(std::make_shared<const Checkpoint>(Checkpoint::open(path)), prefix, opt);
}

MoeLayer load_moe(std::shared_ptr<const Checkpoint> ckp, const std::string& P, const LoadOptions& opt) {
  if (!ckp) fail(Status::kInvalidArgument, "load_moe: no checkpoint");
  const Checkpoint& ck = *ckp;
  if (ck.gguf())
    fail(Status::kNotSupported, "MoE layers from a GGUF file are not supported; clquant runs GGUF linear layers (" +
                                    gguf_supported_types() + ") through 'clquant gemm'");
  MoeLayer out;
  out.checkpoint = ckp;
  out.prefix = P;
  // Integer experts: one format and width decision for the block, from expert 0's gate projection
  // (every expert is then validated against it).
  std::optional<W4Format> fmt;
  int gs = opt.group_size, bits = 4;
  if (opt.bits && opt.bits != 4 && opt.bits != 8)
    fail(Status::kInvalidArgument, "MoE experts have 4- or 8-bit integer codes, not " + std::to_string(opt.bits));
  std::string e0 = moe_gate_proj_name(ck, P, 0);
  // Dense routed experts beside integer shared ones still need the integer format.
  const std::string shared = moe_shared_prefix(ck, P);
  auto is_int = [&](const std::string& b) {
    const StTensor* w = ck.find(b + ".weight");
    return ck.find(b + ".qweight") || (w && w->dtype == StDType::kI8);
  };
  if (!is_int(e0) && !shared.empty() && is_int(shared + ".gate_proj")) e0 = shared + ".gate_proj";
  // W8A8 int8 configs quantize the activations per token too; these experts run W8A16 (fp16/bf16
  // activations), which would be a different layer: refuse rather than drop the activation rule.
  auto refuse_w8a8 = [&](const std::optional<QuantConfig>& cfg) {
    if (cfg && cfg->int8_act)
      fail(Status::kNotSupported, "MoE block '" + P + "': " + cfg->source +
                                      " quantizes the activations to int8 (W8A8); fused MoE runs int8 weight-only "
                                      "experts (W8A16), not W8A8 int8");
  };
  if (const StTensor* q = ck.find(e0 + ".qweight")) {
    auto cfg = read_quant_config(ck.dir());
    // GPTQ 4- and 8-bit experts have the same tensor names: the width comes from the option or the
    // config (`bits`), never from a guess (as for a linear layer).
    bits = opt.bits ? opt.bits : cfg ? cfg->bits : 4;
    fmt = decide_w4_format(*q, require(ck, e0, ".scales", "an integer expert with a '.qweight' needs"), e0, opt, cfg,
                           &out.format_source);
    if (bits == 8 && *fmt == W4Format::kAwq)
      fail(Status::kNotSupported, "MoE block '" + P + "': AWQ experts are 4-bit, but " +
                                      (opt.bits ? std::string("the requested width") : cfg->source) + " says 8 bits");
    if (bits == 8 && *fmt == W4Format::kCompressedTensors)
      fail(Status::kNotSupported, "MoE block '" + P + "': compressed-tensors int8 experts are read from an I8 '.weight' "
                                      "(int-quantized), not from a '.qweight'");
    if (bits == 8) refuse_w8a8(cfg);
    if (gs == 0 && cfg && cfg->group_size) gs = *cfg->group_size;
  } else if (const StTensor* w = ck.find(e0 + ".weight"); w && w->dtype == StDType::kI8) {
    // compressed-tensors int-quantized int8: the tensors say the format and the width.
    if (opt.bits && opt.bits != 8)
      fail(Status::kInvalidArgument, "MoE block '" + P + "': '" + w->name + "' is I8, so its codes are 8-bit, not " +
                                         std::to_string(opt.bits));
    if (auto f = explicit_format(opt); f && *f != W4Format::kCompressedTensors)
      fail(Status::kInvalidArgument, "MoE block '" + P + "' holds compressed-tensors int8 experts (an I8 '" + w->name +
                                         "'), not " + w4_format_name(*f) + " (" + opt.format_option + ")");
    auto cfg = read_quant_config(ck.dir());
    refuse_w8a8(cfg);
    if (cfg && cfg->ignores(e0))
      fail(Status::kInvalidArgument, "MoE expert '" + e0 + "' holds an I8 '.weight' but " + cfg->source +
                                         " lists it under 'ignore' (left unquantized)");
    if (cfg && cfg->symmetric && !*cfg->symmetric && !ck.find(e0 + ".weight_zero_point"))
      fail(Status::kFormatError, cfg->source + " says the weights are asymmetric, but '" + e0 +
                                     ".weight_zero_point' is missing");
    bits = 8;
    fmt = W4Format::kCompressedTensors;
    out.format_source = cfg && cfg->format == W4Format::kCompressedTensors ? cfg->source : "tensor names (an I8 '.weight')";
    if (gs == 0 && cfg && cfg->group_size) gs = *cfg->group_size;
  } else {
    // Dense or FP8 experts: an int4 format override is a mistake worth naming.
    explicit_format(opt);
    if (!opt.format.empty() && ck.find(e0 + ".weight"))
      fail(Status::kInvalidArgument,
           opt.format_option + " names an int4 format, but '" + e0 + ".weight' is not an int4 layer");
  }
  out.moe = moe_from_checkpoint(ck, P, fmt, gs, bits);
  // FP8 experts honour the config's `scale_fmt: ue8m0` as a dense FP8 layer does (load_fp8),
  // the shared experts with them.
  auto set_ue8m0 = [](MoeCheckpoint& m, bool on) { m.ue8m0_act_scales = on && m.kind == MoeWeightKind::kFp8; };
  const bool any_fp8 = out.moe.kind == MoeWeightKind::kFp8 || (out.moe.shared && out.moe.shared->kind == MoeWeightKind::kFp8);
  if (any_fp8) {
    const auto qcfg = read_quant_config(ck.dir());
    const bool ue8m0 = qcfg && qcfg->scale_fmt == "ue8m0";
    set_ue8m0(out.moe, ue8m0);
    if (out.moe.shared) {
      auto shared = std::make_shared<MoeCheckpoint>(*out.moe.shared);
      set_ue8m0(*shared, ue8m0);
      out.moe.shared = shared;
    }
  }
  out.config = read_moe_config(ck.dir());
  if (!out.moe.router) fail(Status::kFormatError, "checkpoint has no router '" + P + ".gate.weight'");
  // A config that promises shared experts the checkpoint lacks (or of another size) would give a
  // silently different layer.
  if (out.config && out.config->shared_intermediate) {
    const int64_t want = *out.config->shared_intermediate;
    if (!out.moe.shared)
      fail(Status::kFormatError, out.config->source + " gives the MoE blocks shared experts (intermediate size " +
                                     std::to_string(want) + "), but the checkpoint has no '" + P +
                                     ".shared_experts.*' or '" + P + ".shared_expert.*'");
    if (out.moe.shared->I != want)
      fail(Status::kInvalidShape, "shared expert of '" + P + "' has intermediate size " +
                                      std::to_string(out.moe.shared->I) + ", but " + out.config->source + " implies " +
                                      std::to_string(want));
  }
  return out;
}

}  // namespace clq
