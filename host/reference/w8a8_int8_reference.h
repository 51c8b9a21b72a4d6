// Host twins of the W8A8 int8 op (SPEC section 7): the per-token activation quantizer
// (kernels_cl/w8a8_int8/quant.cl, bit-identical) and the integer GEMM (kernels_cl/w8a8_int8/gemm.cl:
// the same exact int32 sums, the same two fp32 products, so equal before the output rounding).
#pragma once
#include <cstdint>
#include <vector>

#include "host/numeric.h"

namespace clq {

struct Int8ActHost {
  int64_t M = 0, K = 0;
  std::vector<int8_t> codes;  // [M][K]
  std::vector<float> scales;  // [M]; NaN for a row holding NaN or Inf (its codes are 0)
};
Int8ActHost quantize_int8_act_host(const void* x, DType xt, int64_t M, int64_t K);

// Per-channel symmetric int8 weights, w [N][K] signed, one fp32 scale per output column.
struct Int8Weights {
  int64_t K = 0, N = 0;
  std::vector<int8_t> w;    // [N][K]
  std::vector<float> sw;    // [N]
};

// Y[m][n] = ((float)sum_k q[m][k] * w[n][k] * s_a[m]) * s_w[n], fp32, [M][N].
std::vector<float> w8a8_int8_host(const Int8Weights& w, const Int8ActHost& a);

}  // namespace clq
