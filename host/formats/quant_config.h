// Reading the quantization settings that sit beside a checkpoint: quantize_config.json
// (AutoGPTQ/GPTQModel), else the "quantization_config" of config.json (transformers, AutoAWQ).
#pragma once
#include <optional>
#include <vector>
#include <string>

#include "host/formats/w4.h"

namespace clq {

struct QuantConfig {
  std::string source;  // the file it came from
  std::string quant_method;
  std::optional<W4Format> format;
  std::optional<int> group_size;
  bool int8_act = false;  // W8A8 int8: the group also quantizes the activations per token to int8
  int bits = 4;  // integer weights: 4, or 8 (GPTQ `bits`, compressed-tensors `weights.num_bits`)
  std::optional<bool> desc_act;
  std::string scale_fmt;  // FP8 (DeepSeek-V3.1): "ue8m0" rounds activation scales up to powers of two
  // compressed-tensors only:
  std::string ct_format;            // "pack-quantized", "float-quantized", ...
  bool ct_float = false;            // the Linear group quantizes weights to FP8
  std::optional<bool> symmetric;    // weights.symmetric
  std::vector<std::string> ignore;  // layers left unquantized (names, or "re:" patterns)
  // True when `layer` (a prefix such as model.layers.0.mlp.down_proj) is on the ignore list.
  bool ignores(const std::string& layer) const;
};

// Returns nothing when neither file exists; throws FormatError on a malformed file.
// GPTQ without "checkpoint_format" means v1 ("gptq"): that is what every GPTQ writer produced
// before GPTQModel added the key, and what GPTQModel assumes when it is missing.
std::optional<QuantConfig> read_quant_config(const std::string& dir);

}  // namespace clq
