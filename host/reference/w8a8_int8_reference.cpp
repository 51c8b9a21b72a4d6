#include "host/reference/w8a8_int8_reference.h"

#include <algorithm>
#include <cmath>

#include "runtime/status.h"

namespace clq {

Int8ActHost quantize_int8_act_host(const void* x, DType xt, int64_t M, int64_t K) {
  Int8ActHost a;
  a.M = M;
  a.K = K;
  a.codes.assign(size_t(M * K), 0);
  a.scales.resize(size_t(M));
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0.0f;
    bool bad = false;
    for (int64_t k = 0; k < K; ++k) {
      const float v = load_as_f32(x, size_t(m * K + k), xt);
      bad |= !std::isfinite(v);
      amax = std::max(amax, std::fabs(v));
    }
    if (bad) {
      a.scales[size_t(m)] = std::nanf("");
      continue;
    }
    // IEEE fp32 division is correctly rounded on the host; nearbyint rounds half to even.
    const float s = std::max(amax, 1e-10f) / 127.0f;
    a.scales[size_t(m)] = s;
    for (int64_t k = 0; k < K; ++k) {
      const float q = std::nearbyint(load_as_f32(x, size_t(m * K + k), xt) / s);
      a.codes[size_t(m * K + k)] = int8_t(std::min(127.0f, std::max(-128.0f, q)));
    }
  }
  return a;
}

std::vector<float> w8a8_int8_host(const Int8Weights& w, const Int8ActHost& a) {
  if (a.K != w.K) fail(Status::kInvalidShape, "w8a8_int8_host: activations K disagree with the weights");
  std::vector<float> y(size_t(a.M * w.N));
  for (int64_t m = 0; m < a.M; ++m)
    for (int64_t n = 0; n < w.N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < w.K; ++k) acc += int64_t(a.codes[size_t(m * w.K + k)]) * w.w[size_t(n * w.K + k)];
      y[size_t(m * w.N + n)] = (float(acc) * a.scales[size_t(m)]) * w.sw[size_t(n)];
    }
  return y;
}

}  // namespace clq
