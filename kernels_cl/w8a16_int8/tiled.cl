// W8A16 int8 for larger M (prefill): local-memory tiles (common/tiled_core.clh has the picture),
// each weight tile dequantized once per work-group, (q - z) * s in fp32, and reused for TILE_M
// rows of x. Weight layout as w8a16_int8/gemv.cl: 4 rows to a word, groups may change at any
// word row (each word row looks up its own group).
#include "common/tiled_core.clh"

__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void w8a16_int8_gemm_tiled(__global const uint* restrict qw_gl,
                           __global const float* restrict scales_gl,
                           __global const ushort* restrict zeros_gl,
                           __global const int* restrict wgroup_gl,
                           __global const float* restrict xp_gl,
                           __global clq_out_t* restrict y_gl,
                           int M, int N, int Np, int block_n, int Kp) {
  CLQ_TILE_PROLOGUE
  const int words = Kp / 4;

  for (int k0 = 0; k0 < Kp; k0 += TILE_K) {
    clq_tile_load_x(x_sh, xp_gl, m_base, M, Kp, k0, lid);
    // w tile: TILE_K/4 word rows x TILE_N columns, each word dequantized into 4 rows (column
    // blocks of block_n as in w4a16/gemv.cl; padding columns read as 0).
    for (int e = lid; e < (TILE_K / 4) * TILE_N; e += WG_X * WG_Y) {
      const int wr = e / TILE_N, c = e % TILE_N;
      const int n = n_base + c;
      const int w = k0 / 4 + wr;
      float s = 0.0f, z = 0.0f;
      uint q = 0u;
      if (n < N) {
        q = qw_gl[(size_t)(n / block_n) * words * block_n + (size_t)w * block_n + n % block_n];
        const size_t gi = (size_t)wgroup_gl[w] * Np + n;
        s = scales_gl[gi];
        z = (float)zeros_gl[gi];
      }
      for (int j = 0; j < 4; ++j) w_sh[wr * 4 + j][c] = ((float)((q >> (8 * j)) & 0xFFu) - z) * s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    clq_tile_fma(x_sh, w_sh, acc, tx, ty);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  clq_tile_store(acc, y_gl, m_base, n_base, M, N, tx, ty);
}
