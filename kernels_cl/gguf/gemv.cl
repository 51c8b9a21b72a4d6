// gguf_gemm/gemv: one work-item per output column n and GEMV_M tokens, walking K one code word at
// a time: consecutive work-items read consecutive words (coalesced on a GPU, vectorizable across
// work-items on a CPU). The work-group first converts KCHUNK activations of each of its rows to
// fp32 in local memory, so a value is decoded once per work-group, not once per column. (Folding
// the offset out per group, as W4A16 does, measured slower here on PoCL: 5 -> 11 ms at M=16.)
// Sums run in K order in fp32; nothing depends on scheduling.
#include "common/act_io.clh"
#include "gguf/affine.clh"

#ifndef GEMV_M
#define GEMV_M 4
#endif
#define KCHUNK 256
#define WG 64

// Split-K (a GPU needs more work-items than N columns give): split s of get_global_size(2) walks
// chunks [s * cps, (s + 1) * cps) and, unless it is the only one (direct), stores fp32 partials
// part[s][m][n] that gguf_splitk_reduce sums in split order.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void gguf_gemv(
    __global const uint* restrict codes, __global const float2* restrict so, __global const clq_in_t* restrict x,
    __global clq_out_t* restrict y, __global float* restrict part, int M, int N, int K, int cps, int direct) {
  const int n = get_global_id(0), t = get_local_id(0);
  const int m0 = get_group_id(1) * GEMV_M;
  const int split = get_global_id(2);
  const int k_begin = split * cps * KCHUNK, k_end = min(K, k_begin + cps * KCHUNK);
  const int nc = min(n, N - 1);  // columns past N compute a copy of the last one and store nothing
  __local float xs[GEMV_M][KCHUNK];
  float acc[GEMV_M];
  for (int r = 0; r < GEMV_M; ++r) acc[r] = 0.0f;
  for (int kc = k_begin; kc < k_end; kc += KCHUNK) {
    const int len = min(KCHUNK, k_end - kc);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < GEMV_M; ++r) {
      const int m = min(m0 + r, M - 1);  // rows past M repeat the last row; never stored
      for (int i = t; i < len; i += WG) xs[r][i] = clq_load_in(x, (size_t)m * (size_t)K + (size_t)(kc + i));
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = 0; w < len / PER_WORD; ++w) {
      const int kw = kc / PER_WORD + w;
      const uint word = codes[(size_t)kw * (size_t)N + (size_t)nc];
      const float2 g = so[(size_t)(kw * PER_WORD / GROUP) * (size_t)N + (size_t)nc];
      for (int i = 0; i < PER_WORD; ++i) {
        const float wt = g.x * (float)((word >> (CODE_BITS * i)) & CODE_MASK) + g.y;
        for (int r = 0; r < GEMV_M; ++r) acc[r] += wt * xs[r][w * PER_WORD + i];
      }
    }
  }
  if (n < N)
    for (int r = 0; r < GEMV_M; ++r) {
      if (m0 + r >= M) break;
      const size_t at = (size_t)(m0 + r) * (size_t)N + (size_t)n;
      if (direct)
        clq_store_out(y, at, acc[r]);
      else
        part[(size_t)split * (size_t)M * (size_t)N + at] = acc[r];
    }
}

__kernel void gguf_splitk_reduce(__global const float* restrict part, __global clq_out_t* restrict y, int M, int N,
                                 int splits) {
  const int n = get_global_id(0), m = get_global_id(1);
  if (n >= N || m >= M) return;
  float s = 0.0f;
  for (int i = 0; i < splits; ++i) s += part[((size_t)i * M + m) * N + n];
  clq_store_out(y, (size_t)m * N + n, s);
}
