// GGUF linear layers: a 2-D block-quantized tensor `P.weight` with ne = [K, N] (each of the N
// output rows is K values in whole blocks), y = x @ W^T. The block formats clquant runs
// (docs/numerics.md, "GGUF block formats"):
//   Q4_0  32 values, 18 bytes: fp16 d, 16 bytes of nibbles; w = d * (q - 8)
//   Q8_0  32 values, 34 bytes: fp16 d, 32 int8;             w = d * q
//   Q4_K 256 values, 144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins for 8
//        sub-blocks of 32, 128 bytes of nibbles;           w = (d * sc) * q - dmin * m
//   Q6_K 256 values, 210 bytes: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8
//        scales (one per 16 values), fp16 d;               w = (d * sc) * (q - 32)
// Every product above is exact in fp32 (at most 24 significant bits), so the only rounding in a
// dequantized weight is Q4_K's subtraction; the host twin below does it in fp64.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/formats/w4.h"
#include "host/io/gguf.h"

namespace clq {

struct GgufLinear {
  const GgufTensor* weight = nullptr;
  uint32_t type = 0;  // GgmlType
  int64_t N = 0, K = 0;
  int block = 0, block_bytes = 0;
  int64_t row_bytes() const { return K / block * block_bytes; }
};

// Whether clquant runs linear layers of this ggml type.
bool gguf_type_supported(uint32_t type);
std::string gguf_supported_types();  // "Q4_0, Q8_0, Q4_K, Q6_K"

// Checks a tensor as a linear layer's weight: 2 dims, a supported type, whole blocks per row,
// every fp16 scale finite (a NaN or Inf scale is refused here, before any work). Throws
// InvalidShape / NotSupported / FormatError naming the rule and the values.
GgufLinear validate_gguf_linear(const GgufTensor& t);

// Value k (0 <= k < K) of output row n, in fp64, from the block bytes (the host twin of
// kernels_cl/gguf/blocks.clh).
double gguf_weight(const GgufLinear& l, int64_t n, int64_t k);
// The whole layer as W[k][n] (row-major [K][N]), for gemm_reference.
std::vector<double> dequantize_gguf(const GgufLinear& l);

// The layout the gguf_gemm kernels read, made at load (bench/RESULTS.md, "GGUF": decoding the
// file's row-major blocks in the kernel was 26-50x slower on PoCL): w = s * code + o per group of
// `group` values along K, codes unsigned, transposed so consecutive work-items read consecutive
// columns. s and o are fp32 and exact for all four types (Q4_0: s = d, o = -8d; Q8_0: code =
// q + 128, o = -128d; Q4_K: s = d*sc, o = -dmin*m; Q6_K: s = d*sc per 16, o = -32s), and s * code
// is exact, so the kernel's weight is the exact value rounded once.
struct GgufAffine {
  int code_bits = 4;  // 4 (Q4_0, Q4_K) or 8 (Q8_0, Q6_K)
  int group = 32;     // values per (s, o): 32, or 16 for Q6_K
  int64_t K = 0, N = 0;
  std::vector<uint32_t> codes;  // [K * code_bits / 32][N]: code i of word [w][n] is value k = w * (32 / bits) + i
  std::vector<float> so;        // [K / group][N][2]: s, o
};
GgufAffine repack_gguf_affine(const GgufLinear& l);

// A Q4_0 layer is exactly a symmetric GPTQ group of 32 (scale d, zero 8): the W4A16 layout, so
// every W4A16 kernel (tensor cores included) can run it (gguf_gemm/w4a16).
W4Packed repack_gguf_q4_0(const GgufLinear& l);

}  // namespace clq
