#include "host/reference/reference.h"

#include <cmath>

namespace clq {

std::vector<double> gemm_reference(const void* x, DType xt, int64_t M, int64_t K, const std::vector<double>& w,
                                   int64_t N) {
  std::vector<double> y(size_t(M * N), 0.0);
  std::vector<double> xr(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) xr[size_t(k)] = load_as_f32(x, size_t(m * K + k), xt);
    double* yr = &y[size_t(m * N)];
    for (int64_t k = 0; k < K; ++k) {
      const double a = xr[size_t(k)];
      const double* wr = &w[size_t(k * N)];
      for (int64_t n = 0; n < N; ++n) yr[n] += a * wr[n];
    }
  }
  return y;
}

ErrorStats compare_output(const void* y, DType yt, const std::vector<double>& ref) {
  ErrorStats s;
  s.count = ref.size();
  for (size_t i = 0; i < ref.size(); ++i) {
    double got = load_as_f32(y, i, yt);
    if (std::isnan(got)) {
      ++s.nan_count;
      continue;
    }
    double want = round_to_dtype(ref[i], yt);
    double e = std::fabs(got - want);
    s.mean_abs_err += e;
    s.mean_abs_ref += std::fabs(want);
    if (e > s.max_abs_err) s.max_abs_err = e;
  }
  if (s.count) {
    s.mean_abs_err /= double(s.count);
    s.mean_abs_ref /= double(s.count);
  }
  return s;
}

}  // namespace clq
