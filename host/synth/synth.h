// Synthetic checkpoints in the real on-disk formats, from seeded random weights: used by the
// tests, the benchmark and `clquant` round trips. Nothing here is a shortcut around the format
// code: the tensors are packed exactly as GPTQ/AWQ writers pack them, then read back through
// validate_w4/repack_w4 like any checkpoint.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/formats/fp8.h"
#include "host/formats/moe.h"
#include "host/formats/w4.h"
#include "host/numeric.h"
#include "host/io/safetensors.h"

namespace clq {

struct W4SynthSpec {
  W4Format format = W4Format::kGptq;
  int64_t K = 256, N = 256;
  int group_size = 128;    // -1: one group
  bool act_order = false;  // GPTQ / compressed-tensors: g_idx from a random permutation of K
  // With act_order, nonzero: the permutation comes from this seed alone, so two layers can share
  // one (an MoE expert's gate and up projections read the same input: GPTQ gives them one order).
  uint64_t act_order_seed = 0;
  bool symmetric = false;  // zero point 8 everywhere (128 at 8 bits)
  int bits = 4;            // 8: GPTQ 8-bit / compressed-tensors int8 (fp32 per-channel or group scales)
  bool ct_int_quantized = false;  // 8-bit compressed-tensors: I8 `weight` (int-quantized), not weight_packed
  bool w8a8_config = false;       // with it: the config also quantizes activations (W8A8 int8, per token)
  float scale_multiplier = 1.0f;  // scales drawn from the usual range times this (tiny or huge layers)
  uint64_t seed = 1;
};

class W4Synth {
 public:
  explicit W4Synth(const W4SynthSpec& spec);
  const W4SynthSpec& spec() const { return spec_; }
  // Views onto the tensors (valid while this object lives), as a checkpoint would give them.
  W4Checkpoint checkpoint() const;
  void add_to(SafetensorsWriter& w, const std::string& prefix) const;
  // quantize_config.json content as GPTQModel / AutoAWQ write it.
  std::string quantize_config_json() const;

 private:
  W4SynthSpec spec_;
  std::vector<int32_t> qweight_, qzeros_, g_idx_;
  std::vector<uint16_t> scales_;
  std::vector<float> scales_f32_;      // compressed-tensors 8-bit
  std::vector<int8_t> i8_w_, i8_z_;    // int-quantized
  StTensor t_qweight_, t_qzeros_, t_scales_, t_g_idx_, t_shape_;
  std::vector<int64_t> shape_;  // compressed-tensors weight_shape
};

// The weight form W8A8 int8 takes: compressed-tensors int-quantized, per channel, symmetric.
W4SynthSpec w8a8_synth_spec(int64_t N, int64_t K, uint64_t seed);

// An FP8 layer the way DeepSeek-V3's converter makes one: normal(0, 0.02) weights, a scale per
// 128x128 block (or one per tensor) = amax / 448, codes = e4m3(w / scale).
struct Fp8SynthSpec {
  int64_t N = 256, K = 256;
  bool block = true;
  bool with_input_scale = false;  // per-tensor only: a static activation scale
  bool e8m0_scales = false;       // block only: power-of-two scales stored as F8_E8M0 (ue8m0)
  bool channel = false;           // !block: one scale per output row, weight_scale [N, 1] (compressed-tensors)
  bool ct_names = false;          // block: scales named weight_scale, as compressed-tensors writes them
  uint64_t seed = 1;
};

class Fp8Synth {
  std::vector<uint8_t> e8m0_;  // F8_E8M0 copy of the block scales (e8m0_scales)
 public:
  explicit Fp8Synth(const Fp8SynthSpec& spec);
  Fp8Checkpoint checkpoint() const;
  void add_to(SafetensorsWriter& w, const std::string& prefix) const;

 private:
  Fp8SynthSpec spec_;
  std::vector<uint8_t> weight_;
  std::vector<float> scale_;
  float input_scale_ = 0;
  StTensor t_weight_, t_scale_, t_input_scale_;
};

struct MoeSynthSpec {
  MoeWeightKind kind = MoeWeightKind::kDense;
  int64_t E = 8, H = 256, I = 128;
  // int4 and int8 experts: gptq / gptq_v2 (int4 also awq); int8 also kCompressedTensors, written
  // as compressed-tensors int-quantized (an I8 `weight`, fp32 `weight_scale` [N, G]).
  W4Format int4_format = W4Format::kGptq;
  int group_size = 64;  // -1: one group (compressed-tensors `channel` strategy)
  bool symmetric = false;  // integer experts: zero 8 / 128 (compressed-tensors: no weight_zero_point)
  DType dense_dtype = DType::kBF16;
  bool router = true, bias = false;
  // Benchmarks at full model size: every expert views expert 0's tensors (the values do not
  // change the speed; generating 256 DeepSeek experts would take minutes).
  bool share_expert_weights = false;
  bool mixtral_names = false;  // write experts.{e}.w1/w3/w2 (Mixtral) instead of gate/up/down_proj
  // Shared experts: 0 = none; else one MLP of this intermediate size and the same kind, written as
  // DeepSeek-V3's P.shared_experts or, with shared_gate, as Qwen2-MoE's P.shared_expert with its
  // P.shared_expert_gate.weight [1, H] (bf16, ~ N(0, 1/sqrt(H))).
  int64_t shared_I = 0;
  bool shared_gate = false;
  // int4 / int8: GPTQ act-order (desc_act), a random permutation per expert and projection, gate
  // and up of one expert sharing theirs.
  bool act_order = false;
  bool fp8_e8m0_scales = false;   // FP8: weight block scales stored as F8_E8M0
  bool ue8m0_act_scales = false;  // FP8: the checkpoint's config says scale_fmt ue8m0 (MoeCheckpoint's flag)
  uint64_t seed = 1;
};

// A synthetic MoE layer in the real formats (router ~ N(0, 1/sqrt(H)), dense experts ~ N(0, 0.05),
// int4 via W4Synth, FP8 via Fp8Synth), writable under Hugging Face names.
class MoeSynth {
 public:
  explicit MoeSynth(const MoeSynthSpec& spec);
  const MoeCheckpoint& checkpoint() const { return ck_; }
  void add_to(SafetensorsWriter& w, const std::string& prefix) const;
  // Integer experts: the quantization settings a real checkpoint of them carries beside the weights
  // (GPTQ quantize_config.json, or compressed-tensors config.json's quantization_config, as
  // W4Synth::quantize_config_json); "" for dense and FP8 experts.
  std::string quantize_config_json() const;

 private:
  // Writes expert e's projection p (0 gate, 1 up, 2 down) under `base` (e.g. P.experts.3.gate_proj).
  void add_projection(SafetensorsWriter& w, int64_t e, int p, const std::string& base) const;
  MoeSynthSpec spec_;
  MoeCheckpoint ck_;
  std::shared_ptr<MoeSynth> shared_;  // the shared MLP as a block of one expert
  std::vector<uint16_t> shared_gate_;
  StTensor shared_gate_t_;
  std::vector<std::vector<uint16_t>> dense_;  // per expert and projection
  std::vector<StTensor> dense_t_;
  std::vector<W4Synth> w4_;
  std::vector<Fp8Synth> f8_;
  std::vector<uint16_t> router_;
  std::vector<float> bias_;
  StTensor router_t_, bias_t_;
};

// Seeded random GGUF blocks for an N x K linear layer of ggml `type` (Q4_0, Q8_0, Q4_K, Q6_K):
// every code random, every fp16 scale a random finite value of the size real files hold.
std::vector<uint8_t> random_gguf_blocks(uint32_t type, int64_t N, int64_t K, uint64_t seed);

// Seeded random activations in [-1, 1), stored as `t` (raw bytes), never all zeros.
std::vector<uint8_t> random_activations(int64_t M, int64_t K, DType t, uint64_t seed);

}  // namespace clq
