// W4A16 for larger M (prefill): a local-memory tiled GEMM that dequantizes each weight tile
// once per work-group and reuses it for TILE_M rows of x.
//
//   xp_gl [M][Kp] fp32 (gathered)          qw_gl [Kp/8][N] packed int4 (see w4a16/gemv.cl)
//        k ->                                    n ->
//   m  +--------+                          k  +--------+
//   |  |TILE_M x| -> x_sh[TILE_K][TILE_M]  |  |TILE_K x| -> dequantized -> w_sh[TILE_K][TILE_N]
//   v  |TILE_K  |    (transposed, so the   v  |TILE_N  |    (q - z) * s, exact in fp32
//      +--------+     inner loop reads         +--------+
//                     rows as broadcasts)
//
// The tile skeleton (work split, x staging, inner product, store) is common/tiled_core.clh's.
// Kp is a multiple of TILE_K = 32 (the repacker pads it), so no K tail exists; M and N tails are
// guarded. Groups may change at any word row: each word row looks up its own group.
#include "common/tiled_core.clh"

__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void w4a16_gemm_tiled(__global const uint* restrict qw_gl,
                      __global const ushort* restrict scales_gl,
                      __global const uchar* restrict zeros_gl,
                      __global const int* restrict wgroup_gl,
                      __global const float* restrict xp_gl,
                      __global clq_out_t* restrict y_gl,
                      int M, int N, int Np, int block_n, int Kp) {
  CLQ_TILE_PROLOGUE

  for (int k0 = 0; k0 < Kp; k0 += TILE_K) {
    clq_tile_load_x(x_sh, xp_gl, m_base, M, Kp, k0, lid);
    // w tile: TILE_K/8 word rows x TILE_N columns, each word dequantized into 8 rows.
    for (int e = lid; e < (TILE_K / 8) * TILE_N; e += WG_X * WG_Y) {
      const int wr = e / TILE_N, c = e % TILE_N;
      const int n = n_base + c;
      const int w = k0 / 8 + wr;
      if (n < N) {
        // Column blocks of block_n (see w4a16/gemv.cl); block_n = Np is plain [Kp/8][Np].
        const uint q = qw_gl[(size_t)(n / block_n) * (Kp / 8) * block_n + (size_t)w * block_n + n % block_n];
        const size_t gi = (size_t)wgroup_gl[w] * Np + n;
        const float s = clq_fp16_to_f32(scales_gl[gi]);
        const float z = (float)zeros_gl[gi];
        for (int j = 0; j < 8; ++j) w_sh[wr * 8 + j][c] = ((float)((q >> (4 * j)) & 15u) - z) * s;
      } else {
        for (int j = 0; j < 8; ++j) w_sh[wr * 8 + j][c] = 0.0f;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    clq_tile_fma(x_sh, w_sh, acc, tx, ty);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  clq_tile_store(acc, y_gl, m_base, n_base, M, N, tx, ty);
}
