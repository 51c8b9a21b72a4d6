// CPU references in fp64 on the same quantized inputs the device sees (SPEC section 6).
#pragma once
#include <cstdint>
#include <vector>

#include "host/numeric.h"

namespace clq {

// y[m][n] = sum_k x[m][k] * w[k][n], all in fp64. x is stored as `xt` (row-major [M][K]),
// w is row-major [K][N].
std::vector<double> gemm_reference(const void* x, DType xt, int64_t M, int64_t K, const std::vector<double>& w,
                                   int64_t N);

struct ErrorStats {
  double mean_abs_err = 0, mean_abs_ref = 0, max_abs_err = 0;
  size_t nan_count = 0, count = 0;
  double rel_mean() const { return mean_abs_ref > 0 ? mean_abs_err / mean_abs_ref : mean_abs_err; }
};

// Compares device output `y` (stored as `yt`) with the reference rounded once to `yt`: the
// kernel is judged on what it adds beyond the unavoidable output rounding.
ErrorStats compare_output(const void* y, DType yt, const std::vector<double>& ref);

}  // namespace clq
