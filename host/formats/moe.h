// A mixture-of-experts layer as Hugging Face checkpoints store it (Qwen-MoE, Mixtral-style
// names, DeepSeek-V3): router P.gate.weight [E, H] (+ optional P.gate.e_score_correction_bias
// [E]) and, per expert e, P.experts.{e}.gate_proj / up_proj [I, H] and down_proj [H, I], each a
// dense fp16/bf16 `.weight`, a GPTQ/AWQ int4 layer, an 8-bit integer weight-only layer (GPTQ
// 8-bit `.qweight`, or compressed-tensors int-quantized: an I8 `.weight` + `.weight_scale`), or an
// FP8 `.weight` + `.weight_scale_inv`.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/formats/fp8.h"
#include "host/formats/w4.h"
#include "host/numeric.h"
#include "host/io/safetensors.h"

namespace clq {

// kInt8 (W8A16 int8, SPEC section 7) was added after the others: it comes last so the existing
// values keep their numbers.
enum class MoeWeightKind { kDense, kInt4, kFp8, kInt8 };
const char* moe_kind_name(MoeWeightKind k);

struct MoeCheckpoint {
  MoeWeightKind kind = MoeWeightKind::kDense;
  int64_t E = 0, H = 0, I = 0;
  const StTensor* router = nullptr;  // [E, H] F32/F16/BF16; may be null when logits are given
  const StTensor* bias = nullptr;    // [E] F32 (e_score_correction_bias), optional
  // A BF16/F16 bias as stored (transformers saves the whole model in its torch_dtype), widened
  // exactly to F32 at load; `bias` then points here. Shared so copies of the block keep it.
  std::shared_ptr<const StTensor> bias_widened;
  std::shared_ptr<const std::vector<float>> bias_widened_data;
  // One entry per expert and projection (views into the checkpoint; the file must outlive this).
  std::vector<const StTensor*> gate_d, up_d, down_d;  // dense .weight
  // int4, and int8 (kInt8): W4Checkpoint carries both widths (bits = 4 or 8, host/formats/w4.h)
  std::vector<W4Checkpoint> gate_q, up_q, down_q;
  std::vector<Fp8Checkpoint> gate_f, up_f, down_f;    // e4m3
  // Shared experts, run for every token beside the routed ones and added to their output:
  // DeepSeek-V3's P.shared_experts (its n_shared_experts stored as one MLP, intermediate size
  // n_shared_experts * moe_intermediate_size) or Qwen2-MoE's P.shared_expert, whose output each
  // token scales by sigmoid(x . shared_gate). Held as a block of one expert (E = 1, its own I and
  // weight kind) so the fused expert GEMMs run it unchanged (host/ops/moe/moe_block.h).
  std::shared_ptr<const MoeCheckpoint> shared;
  const StTensor* shared_gate = nullptr;  // Qwen2-MoE P.shared_expert_gate.weight [1, H]; null: weight 1
  // FP8 experts: config.json's `scale_fmt: ue8m0` (DeepSeek-V3.1): every dynamic activation scale
  // (x per token and 128 columns, and the intermediate a likewise) rounded up to a power of two,
  // as Fp8Checkpoint::ue8m0_act_scales for a dense layer. Set by load_moe, shared experts too.
  bool ue8m0_act_scales = false;
  // Set by moe_from_checkpoint once validate_moe passed, so FusedMoe does not check every expert
  // a second time; code that edits the views afterwards must reset it.
  bool validated = false;
};

// Reads P.gate.* and P.experts.{0..E-1}.*; the int4 format must be given (never guessed: pass the
// one from quantize_config.json / --format). Validates every expert (validate_moe).
// The routing a model family's config.json fixes (docs/numerics.md, "Fused MoE"): model_type
// gives the family's rules, the keys refine them. Read by the loader; `clquant moe` flags override.
struct MoeConfig {
  std::string source, model_type;
  std::optional<int> top_k;            // num_experts_per_tok
  bool renormalize = false;            // Mixtral always; else norm_topk_prob
  bool grouped = false;                // DeepSeek-V3 noaux_tc (and V2 greedy as one group)
  int n_group = 1, topk_group = 1;
  float routed_scaling = 1.0f;         // routed_scaling_factor
  bool softmax_scores = false;         // grouped scoring: softmax (DeepSeek-V2) or sigmoid (V3)
  int n_shared_experts = 0;            // DeepSeek: shared experts beside the routed ones
  // The shared MLP's intermediate size the config implies (DeepSeek: n_shared_experts *
  // moe_intermediate_size; Qwen2-MoE: shared_expert_intermediate_size); the loader checks the
  // checkpoint holds it. Nothing when the config does not say.
  std::optional<int64_t> shared_intermediate;
};
// Nothing when config.json is absent or names no MoE family clquant knows; FormatError on a
// malformed file or a key of the wrong type; NotSupported for a routing method it cannot run.
std::optional<MoeConfig> read_moe_config(const std::string& dir);

// Mixtral names its experts' projections w1 (gate), w3 (up), w2 (down) instead of
// gate_proj/up_proj/down_proj; true when expert 0 of P uses them.
bool moe_uses_mixtral_names(const Checkpoint& ck, const std::string& P);
// Full prefix of expert e's gate projection, in whichever naming the checkpoint uses.
std::string moe_gate_proj_name(const Checkpoint& ck, const std::string& P, int64_t e);

// The names of a block's shared experts: "P.shared_experts" (DeepSeek), "P.shared_expert"
// (Qwen2-MoE), or "" when P holds neither.
std::string moe_shared_prefix(const Checkpoint& ck, const std::string& P);

// Also reads the shared experts (moe_shared_prefix) and the Qwen2-MoE gate when present; integer
// shared experts take the same format, width and group size as the routed ones.
// Experts with a `.qweight` are int4 (bits 4) or GPTQ 8-bit (bits 8: the width comes from the
// config or the caller, never from the shapes); an I8 `.weight` is compressed-tensors int-quantized
// int8 whatever `bits` says (int4_format is then ignored).
MoeCheckpoint moe_from_checkpoint(const Checkpoint& ck, const std::string& prefix, std::optional<W4Format> int4_format,
                                  int group_size, int bits = 4);

// Every expert the same kind and shape; gate/up [I, H], down [H, I]; router [E, H]; bias [E];
// int4 and int8 experts (4- and 8-bit codes, as their kind says) with one group structure:
// act-order (a g_idx other than k / group_size) is taken when gate and up of an expert carry the
// same g_idx (they read the same x) and every expert's g_idx puts as many rows in each group as
// expert 0's does (GPTQ's desc_act, g_idx = perm^-1 / group_size, always does), so all experts
// share one packed group layout; FP8 needs I % 128 == 0 (gate and up blocks meet at a block
// edge); dense weights finite; I % 16 == 0 (the fused SwiGLU reads gate and up columns in aligned
// vectors). Throws naming the expert, the tensor and the rule.
void validate_moe(const MoeCheckpoint& m);

// Whether an int4 or int8 expert's g_idx is other than k / group_size (GPTQ act-order, desc_act).
bool moe_uses_act_order(const MoeCheckpoint& m);

// fp64 dequantized weights of one projection, as [out][in] (HF layout).
std::vector<double> moe_dequantize(const MoeCheckpoint& m, int64_t e, int which /*0 gate, 1 up, 2 down*/);

}  // namespace clq
