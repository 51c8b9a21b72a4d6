// Block-scaled FP8 GEMM for larger M, local-memory tiles, e4m3 decoded in software once per
// tile element. Same math and weight layout as fp8/gemv.cl.
//
//   xq_gl [M][Kp] fp32                     qw_gl [Kp/4][Np] e4m3 quads (column blocks)
//   x_sh[TILE_K][TILE_M]  <- transposed     w_sh[TILE_K][TILE_N] <- decoded e4m3
//
// Work-group 16 x 16, each work-item 4 x 4 outputs (rows ty + 16i, columns tx + 16j). A 128-wide
// scale block is four TILE_K = 32 steps: blk[][] accumulates them in fp32, then
// acc += blk * sa[m][j] * sw[n/128][j] (two-level accumulation). TILE_N = 64 divides 128, so a
// work-group's columns share one weight scale block.
#include "common/tiled_core.clh"

__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void fp8_block_gemm_tiled(__global const uint* restrict qw_gl,
                          __global const float* restrict sw_gl,
                          __global const float* restrict xq_gl,
                          __global const float* restrict sa_gl,
                          __global clq_out_t* restrict y_gl,
                          int M, int N, int Np, int block_n, int Kp) {
  CLQ_TILE_PROLOGUE
  const int Kb = Kp / 128, words = Kp / 4;
  const __global float* sw_rd = sw_gl + (size_t)(n_base / 128) * Kb;
  float blk[RM][RN];  // the current 128-block's sum, scaled into acc when the block ends

  for (int kb = 0; kb < Kb; ++kb) {
    for (int i = 0; i < RM; ++i)
      for (int j = 0; j < RN; ++j) blk[i][j] = 0.0f;
    for (int k0 = kb * 128; k0 < (kb + 1) * 128; k0 += TILE_K) {
      clq_tile_load_x(x_sh, xq_gl, m_base, M, Kp, k0, lid);
      for (int e = lid; e < (TILE_K / 4) * TILE_N; e += WG_X * WG_Y) {
        const int wr = e / TILE_N, c = e % TILE_N;
        const int n = n_base + c;
        const int w = k0 / 4 + wr;
        uint q = 0u;
        if (n < N) q = qw_gl[(size_t)(n / block_n) * words * block_n + (size_t)w * block_n + n % block_n];
        w_sh[wr * 4 + 0][c] = clq_e4m3_to_f32((uchar)(q & 0xFFu));
        w_sh[wr * 4 + 1][c] = clq_e4m3_to_f32((uchar)((q >> 8) & 0xFFu));
        w_sh[wr * 4 + 2][c] = clq_e4m3_to_f32((uchar)((q >> 16) & 0xFFu));
        w_sh[wr * 4 + 3][c] = clq_e4m3_to_f32((uchar)(q >> 24));
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      clq_tile_fma(x_sh, w_sh, blk, tx, ty);
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float swk = sw_rd[kb];
    for (int i = 0; i < RM; ++i) {
      const int m = min(m_base + ty + WG_Y * i, M - 1);
      const float sak = sa_gl[(size_t)m * Kb + kb];
      for (int j = 0; j < RN; ++j) acc[i][j] += blk[i][j] * sak * swk;
    }
  }
  clq_tile_store(acc, y_gl, m_base, n_base, M, N, tx, ty);
}
