// The one place that turns a checkpoint on disk into a layer description: finds a layer's
// tensors by prefix, reads quantize_config.json / config.json beside them, decides the format
// (GPTQ v1/v2, AWQ, FP8 block or per-tensor) or refuses with a message that names what it found.
// The command line, the C API and the Python package all load through here, so a format rule
// lives once. Nothing here touches a device.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "host/formats/fp8.h"
#include "host/formats/gguf.h"
#include "host/formats/moe.h"
#include "host/formats/quant_config.h"
#include "host/formats/w4.h"
#include "host/io/safetensors.h"

namespace clq {

struct LoadOptions {
  std::string format;  // "" = decide (config, else shapes); else gptq | gptq_v2 | awq | compressed-tensors (int4 only)
  int group_size = 0;  // 0 = from the config, else from the shapes; -1 = one group over K
  // Integer code width, 4 or 8: 0 = from the config (GPTQ `bits`, compressed-tensors `num_bits`),
  // else from the tensors where they decide it (weight_shape, an I8 weight), else 4.
  int bits = 0;
  // How the caller spells the format option in its own interface ("--format" on the command
  // line, "format=" in Python, "the format argument" in C), so a refusal says what to pass.
  std::string format_option = "--format";
  std::string prefix_option = "--prefix";  // likewise for the layer prefix
};

// An integer layer (int4, or int8 weight-only when ck.bits = 8): the checkpoint's tensors (views)
// with the format decided and the shape validated.
struct W4Layer {
  W4Checkpoint ck;
  W4Shape shape;
  bool w8a8 = false;  // int8 weights whose config quantizes the activations too (W8A8Int8Gemm)
  std::string format_source;  // "--format", the config file's path, or "shapes (...)"
};

// An FP8 e4m3 layer (block scales or one per-tensor scale), validated.
struct Fp8Layer {
  Fp8Checkpoint ck;
  Fp8Shape shape;
};

// A linear layer y = x @ W. Holds the checkpoint open: the tensor views point into its mapping.
struct LinearLayer {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::string prefix;
  std::variant<W4Layer, Fp8Layer, GgufLinear> weights;

  // True for every integer layer; bits() says 4 or 8 (repack_w4 refuses 8: check before repacking).
  bool is_int4() const { return std::holds_alternative<W4Layer>(weights); }
  bool is_fp8() const { return std::holds_alternative<Fp8Layer>(weights); }
  bool is_gguf() const { return std::holds_alternative<GgufLinear>(weights); }
  bool is_int8() const { return is_int4() && w4().ck.bits == 8; }
  bool is_w8a8() const { return is_int4() && w4().w8a8; }
  const W4Layer& w4() const { return std::get<W4Layer>(weights); }
  const Fp8Layer& fp8() const { return std::get<Fp8Layer>(weights); }
  const GgufLinear& gguf() const { return std::get<GgufLinear>(weights); }
  int64_t K() const { return is_int4() ? w4().shape.K : is_fp8() ? fp8().shape.K : gguf().K; }
  int64_t N() const { return is_int4() ? w4().shape.N : is_fp8() ? fp8().shape.N : gguf().N; }
  // "gptq (from quantize_config.json), group 128, g_idx" / "fp8 e4m3 128x128 block scales".
  std::string describe() const;
};

// A fused-MoE block: router and experts, every expert validated once (validate_moe).
struct MoeLayer {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::string prefix;
  MoeCheckpoint moe;
  std::string format_source;  // int4 experts: where the format came from; empty otherwise
  std::optional<MoeConfig> config;  // the family's routing from config.json, when it names one
};

// path: a .safetensors file, a model.safetensors.index.json (sharded), a folder holding either,
// or a GGUF file (the layer is then the tensor P.weight, e.g. blk.0.ffn_down.weight).
// Throws clq::Error: FormatError (tensor missing, malformed file or config), InvalidArgument (a
// format that cannot be decided or does not apply), InvalidShape, NotSupported (a dense layer).
LinearLayer load_linear(const std::string& path, const std::string& prefix, const LoadOptions& opt = {});
LinearLayer load_linear(std::shared_ptr<const Checkpoint> ck, const std::string& prefix, const LoadOptions& opt = {});

// P.gate.weight (+ P.gate.e_score_correction_bias) and P.experts.{e}.{gate,up,down}_proj, and
// the shared experts when present (P.shared_experts.*, or P.shared_expert.* with
// P.shared_expert_gate.weight); a config.json that implies shared experts must match them.
MoeLayer load_moe(const std::string& path, const std::string& prefix, const LoadOptions& opt = {});
MoeLayer load_moe(std::shared_ptr<const Checkpoint> ck, const std::string& prefix, const LoadOptions& opt = {});

// The int4 format of one layer from (in order) opt.format, the config, or the packing shapes
// where they decide it (AWQ packs qweight along N; GPTQ v1 and v2 have the same shapes and are
// refused). `source` receives where the answer came from.
W4Format decide_w4_format(const StTensor& qweight, const StTensor& scales, const std::string& prefix,
                          const LoadOptions& opt, const std::optional<QuantConfig>& cfg, std::string* source);

}  // namespace clq
