// The device layout every register-tiled kernel reads (host/caps/tuning.h): a K-major matrix
// [rows][N] becomes column blocks [Np/block_n][rows][block_n], columns padded to Np with `pad`.
#pragma once
#include <cstdint>
#include <vector>

namespace clq {

template <typename T>
std::vector<T> column_blocks(const T* src, int64_t rows, int64_t N, int64_t Np, int64_t block_n, T pad = T(0)) {
  std::vector<T> out(size_t(rows * Np), pad);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n)
      out[size_t((n / block_n) * rows * block_n + r * block_n + n % block_n)] = src[size_t(r * N + n)];
  return out;
}

// [G][N] per-group rows padded to [G][Np] (scales, zeros).
template <typename T>
std::vector<T> pad_columns(const T* src, int64_t rows, int64_t N, int64_t Np, T pad) {
  std::vector<T> out(size_t(rows * Np), pad);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n) out[size_t(r * Np + n)] = src[size_t(r * N + n)];
  return out;
}

}  // namespace clq
