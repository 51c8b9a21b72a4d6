// W8A8 int8 GEMM (SPEC section 7), portable integer arithmetic:
//
//   Y[m][n] = ((float)(sum_k q_a[m][k] * w[n][k]) * s_a[m]) * s_w[n]
//
// with the sum in int32 (exact: the op refuses K above 2^31 / 128^2) and the two products in
// fp32 in that order, so the result is bit-identical to the host twin before the one rounding
// to the output type. Weights: signed bytes 4 to a word along K, [Kw][Np] in column blocks of
// block_n (host/ops/w8a8_int8/w8a8_int8_gemm.cpp); activations: w8a8_int8/quant.cl's codes.
// One work-item per output; the weight word is read once per row of x it serves.
#include "common/act_io.clh"

#ifndef ROWS
#define ROWS 4  // rows of x per work-item
#endif

inline int clq_dot_s8x4(uint a, uint b) {
  const int4 va = convert_int4(as_char4(a)), vb = convert_int4(as_char4(b));
  return va.x * vb.x + va.y * vb.y + va.z * vb.z + va.w * vb.w;
}

__kernel void w8a8_int8_gemm(__global const uint* restrict qw_gl,     // [Np/block_n][Kw][block_n]
                             __global const float* restrict sw_gl,    // [N]
                             __global const uint* restrict codes_gl,  // [M][Kw]
                             __global const float* restrict sa_gl,    // [M]
                             __global clq_out_t* restrict y_gl,       // [M][N]
                             int M, int N, int block_n, int Kw) {
  const int n = get_global_id(0);
  const int m0 = get_global_id(1) * ROWS;
  if (n >= N) return;
  const __global uint* q_rd = qw_gl + (size_t)(n / block_n) * Kw * block_n + (n % block_n);
  int acc[ROWS];
  for (int i = 0; i < ROWS; ++i) acc[i] = 0;
  for (int w = 0; w < Kw; ++w) {
    const uint b = q_rd[(size_t)w * block_n];
    for (int i = 0; i < ROWS; ++i) acc[i] += clq_dot_s8x4(codes_gl[(size_t)min(m0 + i, M - 1) * Kw + w], b);
  }
  const float sw = sw_gl[n];
  for (int i = 0; i < ROWS; ++i) {
    const int m = m0 + i;
    if (m < M) clq_store_out(y_gl, (size_t)m * N + n, ((float)acc[i] * sa_gl[m]) * sw);
  }
}
