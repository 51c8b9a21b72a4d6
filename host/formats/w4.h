// Group-wise int4 checkpoints (SPEC sections 2 and 3) and the kernel's own layout.
//
// GPTQ (AutoGPTQ/GPTQModel): qweight I32 [K/8, N] packed along K; qzeros I32 [G, N/8] packed
// along N; scales F16 [G, N]; optional g_idx I32 [K] (act-order). v1 ("gptq") stores zero-1,
// v2 ("gptq_v2") the true zero. AWQ (AutoAWQ GEMM): qweight I32 [K, N/8] and qzeros I32
// [K/G, N/8] packed along N with the interleave ORDER = [0,2,4,6,1,3,5,7]; true zeros.
//
// Both are validated and repacked once, at load, into W4Packed (see kernels_cl/w4a16_gemv.cl
// for the diagram): rows sorted by group (stable), each group padded to whole 8-row words, the
// whole K padded to a multiple of 32 rows; perm[] maps each packed row to its activation column.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/io/safetensors.h"

namespace clq {

// kCompressedTensors: compressed-tensors `pack-quantized` int4 (vLLM's llm-compressor):
// weight_packed I32 [N, K/8] packed along K (nibble k % 8 of word [n][k / 8], stored q + 8 of a
// signed q in [-8, 7]), weight_scale [N, G] (F16, BF16 or F32), weight_zero_point I32 [N/8, G]
// packed along N (nibble n % 8 of word [n / 8][g], stored z + 8) when asymmetric, absent when
// symmetric (zero 8 in stored units), weight_g_idx I32 [K] with act-order. W = s * (q - z) in
// stored units, the same formula as GPTQ's.
enum class W4Format { kGptq, kGptqV2, kAwq, kCompressedTensors };
const char* w4_format_name(W4Format f);
bool w4_format_from_name(const std::string& s, W4Format* out);

// One layer's tensors as found in a checkpoint (views; the file must outlive this).
//
// The same tensors at 8 bits (SPEC section 7, W8A16 int8; `bits = 8`): GPTQ qweight I32 [K/4, N]
// (byte k % 4 of word [k / 4][n]), qzeros I32 [G, N/4] (byte n % 4), v1 storing zero - 1 as at 4
// bits; compressed-tensors pack-quantized weight_packed I32 [N, K/4] with codes stored q + 128,
// weight_zero_point I32 [N/4, G], or int-quantized: weight I8 [N, K] and weight_zero_point I8
// [N, G] unpacked, signed (told apart by the weight's dtype). Accessors return the stored-unit
// code 0..255 and zero, so W = s * (q - z) is one formula for every format and width. Validation
// and the fp64 reference are shared; the device layout is W8Packed (host/formats/w8.h).
struct W4Checkpoint {
  W4Format format = W4Format::kGptq;
  int bits = 4;        // 4, or 8 for the int8 weight-only formats above
  int group_size = 0;  // 0: infer from the shapes; -1: one group over all of K
  const StTensor* qweight = nullptr;  // compressed-tensors: weight_packed (or weight, int-quantized I8)
  const StTensor* qzeros = nullptr;   // compressed-tensors: weight_zero_point, null when symmetric
  const StTensor* scales = nullptr;   // compressed-tensors: weight_scale
  const StTensor* g_idx = nullptr;    // GPTQ (g_idx) and compressed-tensors (weight_g_idx); may be null
};

// Shapes and group structure after validation.
struct W4Shape {
  int64_t K = 0, N = 0, G = 0;
  int group_size = -1;  // resolved; -1 for one group
  bool has_g_idx = false;
  int bits = 4;
};

// Checks every rule of SPEC sections 2-3 and returns the resolved shape; throws InvalidShape /
// FormatError / InvalidArgument naming the rule and the values. Touches no device.
W4Shape validate_w4(const W4Checkpoint& ck);

// SPEC accessors, written from the formulas (the reference uses these, not the repacked layout).
struct W4Accessor {
  explicit W4Accessor(const W4Checkpoint& ck);  // validates
  W4Shape shape;
  W4Format format;
  uint32_t q(int64_t k, int64_t n) const;  // 0..15 (0..255 at 8 bits)
  uint32_t z(int64_t g, int64_t n) const;  // true zero point (v1: stored + 1), in the units of q
  float s(int64_t g, int64_t n) const;     // scale as fp32
  int64_t group(int64_t k) const;          // g_idx[k], or k / group_size
  const W4Checkpoint& ck;
};

// The group of row k of a validated layer (s = validate_w4(ck)): g_idx[k], or k / group_size.
int64_t w4_group_of(const W4Checkpoint& ck, const W4Shape& s, int64_t k);

// fp64 dequantized weights W[k][n] = s * (q - z), row-major [K][N].
std::vector<double> dequantize_w4(const W4Checkpoint& ck);

constexpr int kW4RowAlign = 32;  // Kp is a multiple of this (the tiled kernel's K step)

// The row order every int layout shares: rows sorted by group (stable, so act-order costs one
// gather of x), each group padded to whole words of `rows_per_word` rows, K padded to a multiple
// of kW4RowAlign. perm[r] is the activation column of packed row r (-1: padding); gstart and
// wgroup count words.
struct GroupedRows {
  int64_t K = 0, N = 0, Kp = 0, G = 0;
  bool act_order = false;        // rows were reordered (by g_idx, or padding inside a group)
  std::vector<int32_t> perm;     // [Kp] activation column of packed row r, -1 for padding
  std::vector<int32_t> gstart;   // [G+1] first word row of each group (last entry = Kp / rows_per_word)
  std::vector<int32_t> wgroup;   // [Kp / rows_per_word] group of each word row
};
GroupedRows group_rows(const W4Accessor& a, int rows_per_word);

// Rows of 8 (group_rows(a, 8)): gstart and wgroup count 8-row words.
struct W4Packed : GroupedRows {
  std::vector<uint32_t> qw;      // [Kp/8][N]: nibble r%8 of word [r/8][n] = q of packed row r
  std::vector<uint16_t> scales;  // [G][N] fp16 bits
  std::vector<uint8_t> zeros;    // [G][N] true zero point, 0..16
  size_t device_bytes() const;   // what the kernels read for one pass over the weights
};

// Refuses an 8-bit checkpoint (NotSupported: it repacks through repack_w8).
W4Packed repack_w4(const W4Checkpoint& ck);


}  // namespace clq
