// W8A16 int8 for skinny M (decode): y[M][N] = x[M][K] @ W[K][N], W = s * (q - z) with 8-bit codes
// q, group scales s (fp32) and true zeros z (GPTQ 8-bit v1/v2, compressed-tensors int8).
//
// Weight layout (repacked once at load, host/formats/w8.cpp), Kp = K padded per group to whole
// 4-row words and overall to a multiple of 32 rows:
//
//            n ->  0    1    2   ...  N-1
//   qw_gl  w=0   [u32][u32][u32] ... [u32]    word [w][n] holds rows 4w..4w+3 of column n,
//          w=1   [u32][u32][u32] ... [u32]    row 4w+i in bits 8i..8i+7 (GPTQ 8-bit's own
//          ...                                packing: a plain GPTQ checkpoint is copied as is)
//          Kp/4-1
//   scales_gl [G][Np] f32, zeros_gl [G][Np] u16 (true zero, up to 256), gstart_gl [G+1] and
//   wgroup_gl [Kp/4] in words
//
// Columns padded to Np and stored in column blocks exactly as w4a16/gemv.cl (same geometry from
// host/caps/tuning.cpp), and the same work split: VEC_COLS columns x GEMV_M rows per work-item,
// split-K ranges in dimension 1 (partials summed by w4a16_splitk_reduce), M tiles in dimension 2.
// Each weight byte is read once per GEMV_M rows; the zero point is folded per group
// (clq_w8_accumulate in common/gemv_core.clh).
#include "common/act_io.clh"
#include "common/gemv_core.clh"

__kernel void w8a16_int8_gemv(__global const uint* restrict qw_gl,
                              __global const float* restrict scales_gl,
                              __global const ushort* restrict zeros_gl,
                              __global const int* restrict gstart_gl,
                              __global const int* restrict wgroup_gl,
                              __global const float* restrict xp_gl,   // [M][Kp] gathered x (packed row order)
                              __global float* restrict part_gl,       // [splits][M][N] when split
                              __global clq_out_t* restrict y_gl,      // [M][N] when not split
                              int M, int N, int Np, int block_n, int Kp, int words_per_split, int direct) {
  const int n0 = get_global_id(0) * VEC_COLS;
  const int split = get_group_id(1);
  const int m0 = get_group_id(2) * GEMV_M;
  if (n0 >= Np) return;
  const int words = Kp / 4;
  const __global uint* q_rd = qw_gl + (size_t)(n0 / block_n) * words * block_n + (n0 % block_n);
  const int w_begin = split * words_per_split;
  const int w_end = min(words, w_begin + words_per_split);
  // Rows past M reuse row M-1 (always valid memory) and are never stored.
  const __global float* x_rd[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) x_rd[i] = xp_gl + (size_t)min(m0 + i, M - 1) * Kp;

  fvec_t res[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) res[i] = (fvec_t)(0.0f);
  clq_w8_accumulate(q_rd, block_n, scales_gl + n0, zeros_gl + n0, Np, gstart_gl, wgroup_gl, x_rd, w_begin, w_end, res);

  clq_store_rows(res, m0, M, n0, N, direct, y_gl, part_gl, split);
}
