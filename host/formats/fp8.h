// FP8 (e4m3) linear layers (SPEC section 4): DeepSeek-V3 / vLLM block scales
// (`weight` F8_E4M3 [N, K] + `weight_scale_inv` [ceil(N/128), ceil(K/128)] in F32, BF16, F16 or
// F8_E8M0, multiplied despite the name), per-tensor (`weight_scale` scalar, optional static
// `input_scale`, each F32, BF16 or F16), or per output
// channel (compressed-tensors `float-quantized` channel strategy: `weight_scale` [N, 1] in F32,
// BF16 or F16). The loader hands a compressed-tensors block `weight_scale` [ceil(N/128),
// ceil(K/128)] over as `weight_scale_inv`.
//
// Repacked once at load: K-major words of four codes, [Kp/4][N] with Kp = K rounded up to 128
// (zero codes pad the ragged last block), and the weight scales as one [Nb][Kb] array for both
// kinds (a per-tensor scale is broadcast), so one kernel serves every FP8 mode.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "host/io/safetensors.h"

namespace clq {

constexpr int kFp8Block = 128;

struct Fp8Checkpoint {
  const StTensor* weight = nullptr;            // F8_E4M3 [N, K]
  const StTensor* weight_scale_inv = nullptr;  // block scales, or
  const StTensor* weight_scale = nullptr;      // one per-tensor scale, or [N, 1] per-channel scales
  const StTensor* input_scale = nullptr;       // optional static activation scale (per-tensor only)
  // The config's `scale_fmt: ue8m0` (DeepSeek-V3.1): dynamic activation scales are rounded up
  // to powers of two (docs/numerics.md).
  bool ue8m0_act_scales = false;
};

struct Fp8Shape {
  int64_t N = 0, K = 0, Nb = 0, Kb = 0;
  bool block = true;     // activations per token and 128 columns (block scales, or channel scales without input_scale)
  bool channel = false;  // one weight scale per output row, applied after the sum (docs/numerics.md)
  std::optional<float> input_scale;
};

// Checks shapes, dtypes, finite scales and the absence of the e4m3 NaN code in the weight;
// throws FormatError / InvalidShape / InvalidArgument / NotSupported naming the rule and values.
Fp8Shape validate_fp8(const Fp8Checkpoint& ck);

struct Fp8Packed {
  int64_t N = 0, K = 0, Kp = 0, Nb = 0, Kb = 0;
  bool block = true;
  std::optional<float> input_scale;
  std::vector<uint32_t> qw;  // [Kp/4][N], byte i of word [w][n] = code of w[n][4w+i]
  std::vector<float> sw;     // [Nb][Kb] (all 1 for a per-channel layer)
  std::vector<float> sn;     // [N] per-channel weight scales; empty otherwise
  bool ue8m0_act_scales = false;  // from Fp8Checkpoint
};

Fp8Packed repack_fp8(const Fp8Checkpoint& ck);

// Weight code and scale as the checkpoint states them (the reference reads these).
uint8_t fp8_weight_code(const Fp8Checkpoint& ck, int64_t n, int64_t k);
float fp8_weight_scale(const Fp8Checkpoint& ck, const Fp8Shape& s, int64_t nb, int64_t kb);  // 1 for channel
float fp8_channel_scale(const Fp8Checkpoint& ck, const Fp8Shape& s, int64_t n);  // 1 unless channel

// How activations meet an FP8 layer (docs/numerics.md).
enum class Fp8Act {
  kBlockDynamic,   // per token, per 128 columns (DeepSeek-V3)
  kTensorDynamic,  // one scale from the whole activation tensor
  kTokenDynamic,   // one scale per token over all K (compressed-tensors FP8_DYNAMIC, SPEC section 7)
  kTensorStatic,   // the checkpoint's input_scale
  kNone,           // weight-only (w8a16)
};
const char* fp8_act_name(Fp8Act a);

}  // namespace clq
