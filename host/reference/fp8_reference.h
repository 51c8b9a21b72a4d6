// fp64 references of the FP8 ops, on the same quantized activations the device sees: the host
// twin of the activation quantizer (fp32, correctly rounded division) and the block-scaled GEMM.
#pragma once
#include <cstdint>
#include <vector>

#include "host/formats/fp8.h"
#include "host/formats/w4.h"
#include "host/numeric.h"

namespace clq {

// Host twin of kernels_cl/fp8/quant.cl, in fp32 with correctly rounded division.
struct Fp8ActHost {
  int64_t M = 0, K = 0, Kb = 0;
  std::vector<uint8_t> codes;  // [M][K]
  std::vector<float> scales;   // [M][Kb] (per-tensor modes repeat the one scale)
};
// ue8m0: dynamic scales rounded up to a power of two, as Fp8Quantizer::set_ue8m0_scales.
Fp8ActHost quantize_fp8_host(const void* x, DType xt, int64_t M, int64_t K, Fp8Act mode, float static_scale = 0,
                             bool ue8m0 = false);

// fp64 reference on the same quantized inputs (activations quantized by the host twin).
std::vector<double> fp8_gemm_reference(const Fp8Checkpoint& ck, const void* x, DType xt, int64_t M, Fp8Act mode);

// W4A8 (SPEC section 7): x quantized to e4m3 as `mode` (per token or per tensor), then
// y[m][n] = sum_k (code * s_a) * W[k][n] in fp64 with W = dequantize_w4(ck).
std::vector<double> w4a8_reference(const W4Checkpoint& ck, const void* x, DType xt, int64_t M, Fp8Act mode,
                                   float static_scale = 0);

}  // namespace clq
