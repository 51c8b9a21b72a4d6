// Helpers the MoE test files share (test_moe, test_moe_quant, test_moe_shared).
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "host/ops/moe/fused_moe.h"
#include "host/reference/reference.h"

namespace clq::test {

// Router logits on a grid of 1/16 with distinct values per token, so no rounding difference
// between the device's and the host's exp/sigmoid can reorder experts (ties are tested
// separately).
inline std::vector<float> grid_logits(int64_t T, int64_t E, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> l(size_t(T * E));
  std::vector<int> perm(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t e = 0; e < E; ++e) l[size_t(t * E + e)] = float(perm[size_t(e)] - E / 2) / 16.0f;
  }
  return l;
}

// The output against the reference, or for FP8 experts against the first alternative reference
// that holds (a value of `a` on an e4m3 rounding midpoint may round either way: docs/numerics.md).
inline ErrorStats compare_moe(const std::vector<uint8_t>& y, DType dt, const std::vector<std::vector<double>>& refs) {
  ErrorStats first = compare_output(y.data(), dt, refs.front());
  if (MoeProblem::within_tolerance(first)) return first;
  for (size_t i = 1; i < refs.size(); ++i) {
    ErrorStats e = compare_output(y.data(), dt, refs[i]);
    if (MoeProblem::within_tolerance(e)) return e;
  }
  return first;
}

}  // namespace clq::test
