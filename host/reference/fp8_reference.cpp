#include "host/reference/fp8_reference.h"

#include <cstring>

#include <algorithm>
#include <cmath>

#include "runtime/status.h"

namespace clq {

namespace {
constexpr float kE4m3Max = 448.0f;

float group_scale(float amax, bool has_nan, bool ue8m0) {
  if (has_nan) return bits_f32(0x7FC00000u);
  const float s = std::max(amax, 1e-10f) / kE4m3Max;
  if (!ue8m0) return s;
  uint32_t b;
  std::memcpy(&b, &s, 4);
  return bits_f32((b + 0x007FFFFFu) & 0xFF800000u);  // up to the next power of two
}
uint8_t quant_e4m3(float v, float s) {
  const float r = v / s;
  if (std::isnan(r)) return 0x7F;
  return f32_to_e4m3(std::min(std::max(r, -kE4m3Max), kE4m3Max));
}
}  // namespace

Fp8ActHost quantize_fp8_host(const void* x, DType xt, int64_t M, int64_t K, Fp8Act mode, float static_scale,
                             bool ue8m0) {
  Fp8ActHost h;
  h.M = M;
  h.K = K;
  h.Kb = (K + kFp8Block - 1) / kFp8Block;
  h.codes.resize(size_t(M * K));
  h.scales.resize(size_t(M * h.Kb));
  if (mode == Fp8Act::kNone) fail(Status::kInvalidArgument, "weight-only mode does not quantize activations");
  float tensor_s = static_scale;
  if (mode == Fp8Act::kTensorDynamic) {
    float amax = 0;
    bool nan = false;
    for (int64_t i = 0; i < M * K; ++i) {
      float v = load_as_f32(x, size_t(i), xt);
      nan |= std::isnan(v);
      amax = std::max(amax, std::fabs(v));
    }
    tensor_s = group_scale(amax, nan, ue8m0);
  }
  for (int64_t m = 0; m < M; ++m) {
    if (mode == Fp8Act::kTokenDynamic) {
      float amax = 0;
      bool nan = false;
      for (int64_t k = 0; k < K; ++k) {
        float v = load_as_f32(x, size_t(m * K + k), xt);
        nan |= std::isnan(v);
        amax = std::max(amax, std::fabs(v));
      }
      tensor_s = group_scale(amax, nan, ue8m0);
    }
    for (int64_t j = 0; j < h.Kb; ++j) {
      const int64_t k0 = j * kFp8Block, k1 = std::min(K, k0 + kFp8Block);
      float s = tensor_s;
      if (mode == Fp8Act::kBlockDynamic) {
        float amax = 0;
        bool nan = false;
        for (int64_t k = k0; k < k1; ++k) {
          float v = load_as_f32(x, size_t(m * K + k), xt);
          nan |= std::isnan(v);
          amax = std::max(amax, std::fabs(v));
        }
        s = group_scale(amax, nan, ue8m0);
      }
      h.scales[size_t(m * h.Kb + j)] = s;
      for (int64_t k = k0; k < k1; ++k)
        h.codes[size_t(m * K + k)] = quant_e4m3(load_as_f32(x, size_t(m * K + k), xt), s);
    }
  }
  return h;
}

std::vector<double> fp8_gemm_reference(const Fp8Checkpoint& ck, const void* x, DType xt, int64_t M, Fp8Act mode) {
  Fp8Shape s = validate_fp8(ck);
  const int64_t N = s.N, K = s.K;
  Fp8ActHost q;
  if (mode != Fp8Act::kNone)
    q = quantize_fp8_host(x, xt, M, K, mode, s.input_scale.value_or(0.0f), ck.ue8m0_act_scales);
  std::vector<double> wdec(static_cast<size_t>(N * K));
  for (int64_t i = 0; i < N * K; ++i) wdec[size_t(i)] = e4m3_to_f32(ck.weight->data[i]);
  std::vector<double> y(size_t(M * N), 0.0), xa(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k)
      xa[size_t(k)] = mode == Fp8Act::kNone ? double(load_as_f32(x, size_t(m * K + k), xt))
                                            : double(e4m3_to_f32(q.codes[size_t(m * K + k)]));
    for (int64_t n = 0; n < N; ++n) {
      double total = 0;
      for (int64_t j = 0; j < s.Kb; ++j) {
        double blk = 0;
        for (int64_t k = j * kFp8Block; k < std::min(K, (j + 1) * kFp8Block); ++k)
          blk += xa[size_t(k)] * wdec[size_t(n * K + k)];
        double sa = mode == Fp8Act::kNone ? 1.0 : double(q.scales[size_t(m * q.Kb + j)]);
        total += blk * sa * double(fp8_weight_scale(ck, s, n / kFp8Block, j));
      }
      y[size_t(m * N + n)] = total * double(fp8_channel_scale(ck, s, n));
    }
  }
  return y;
}

std::vector<double> w4a8_reference(const W4Checkpoint& ck, const void* x, DType xt, int64_t M, Fp8Act mode,
                                   float static_scale) {
  const std::vector<double> w = dequantize_w4(ck);  // [K][N]
  const W4Shape s = validate_w4(ck);
  const int64_t K = s.K, N = s.N;
  const Fp8ActHost q = quantize_fp8_host(x, xt, M, K, mode, static_scale);
  std::vector<double> y(size_t(M * N), 0.0), xa(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k)
      xa[size_t(k)] = double(e4m3_to_f32(q.codes[size_t(m * K + k)])) * double(q.scales[size_t(m * q.Kb + k / kFp8Block)]);
    for (int64_t k = 0; k < K; ++k) {
      const double a = xa[size_t(k)];
      const double* wr = w.data() + size_t(k * N);
      for (int64_t n = 0; n < N; ++n) y[size_t(m * N + n)] += a * wr[n];
    }
  }
  return y;
}

}  // namespace clq
