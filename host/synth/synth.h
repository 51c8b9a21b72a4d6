// Synthetic checkpoints in the real on-disk formats, from seeded random weights: used by the
// tests, the benchmark and `clquant` round trips. Nothing here is a shortcut around the format
// code: the tensors are packed exactly as GPTQ/AWQ writers pack them, then read back through
// validate_w4/repack_w4 like any checkpoint.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/formats/fp8.h"
#include "host/formats/w4.h"
#include "host/numeric.h"
#include "host/io/safetensors.h"

namespace clq {

struct W4SynthSpec {
  W4Format format = W4Format::kGptq;
  int64_t K = 256, N = 256;
  int group_size = 128;    // -1: one group
  bool act_order = false;  // GPTQ only: g_idx from a random permutation of K
  bool symmetric = false;  // zero point 8 everywhere
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
  StTensor t_qweight_, t_qzeros_, t_scales_, t_g_idx_;
};

// An FP8 layer the way DeepSeek-V3's converter makes one: normal(0, 0.02) weights, a scale per
// 128x128 block (or one per tensor) = amax / 448, codes = e4m3(w / scale).
struct Fp8SynthSpec {
  int64_t N = 256, K = 256;
  bool block = true;
  bool with_input_scale = false;  // per-tensor only: a static activation scale
  uint64_t seed = 1;
};

class Fp8Synth {
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

// Seeded random activations in [-1, 1), stored as `t` (raw bytes), never all zeros.
std::vector<uint8_t> random_activations(int64_t M, int64_t K, DType t, uint64_t seed);

}  // namespace clq
