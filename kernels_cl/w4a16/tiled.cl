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
// Work-group 16 x 16; work-item (tx, ty) accumulates rows ty + 16i and columns tx + 16j
// (i, j < 4): strided so that neighbouring work-items touch neighbouring local words.
// Kp is a multiple of TILE_K = 32 (the repacker pads it), so no K tail exists; M and N tails are
// guarded. Groups may change at any word row: each word row looks up its own group.
#include "common/act_io.clh"

#ifndef TILE_M
#define TILE_M 64  // rows of x per work-group
#endif
#ifndef TILE_N
#define TILE_N 64  // columns per work-group
#endif
#define TILE_K 32  // rows of K per step: 4 packed words (fixed by the repacker's padding)
#define WG_X 16
#define WG_Y 16
#define RM (TILE_M / WG_Y)
#define RN (TILE_N / WG_X)

__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void w4a16_gemm_tiled(__global const uint* restrict qw_gl,
                      __global const ushort* restrict scales_gl,
                      __global const uchar* restrict zeros_gl,
                      __global const int* restrict wgroup_gl,
                      __global const float* restrict xp_gl,
                      __global clq_out_t* restrict y_gl,
                      int M, int N, int Np, int block_n, int Kp) {
  __local float x_sh[TILE_K][TILE_M];
  __local float w_sh[TILE_K][TILE_N];
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int lid = ty * WG_X + tx;
  const int n_base = get_group_id(0) * TILE_N;
  const int m_base = get_group_id(1) * TILE_M;

  float acc[RM][RN];
  for (int i = 0; i < RM; ++i)
    for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < Kp; k0 += TILE_K) {
    // x tile: TILE_M x TILE_K floats, 8 consecutive k per load.
    for (int e = lid; e < TILE_M * (TILE_K / 8); e += WG_X * WG_Y) {
      const int r = e / (TILE_K / 8), c = (e % (TILE_K / 8)) * 8;
      const int m = m_base + r;
      const float8 v = m < M ? vload8(0, xp_gl + (size_t)m * Kp + k0 + c) : (float8)(0.0f);
      x_sh[c + 0][r] = v.s0; x_sh[c + 1][r] = v.s1; x_sh[c + 2][r] = v.s2; x_sh[c + 3][r] = v.s3;
      x_sh[c + 4][r] = v.s4; x_sh[c + 5][r] = v.s5; x_sh[c + 6][r] = v.s6; x_sh[c + 7][r] = v.s7;
    }
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
    for (int kk = 0; kk < TILE_K; ++kk) {
      float a[RM], b[RN];
      for (int i = 0; i < RM; ++i) a[i] = x_sh[kk][ty + WG_Y * i];
      for (int j = 0; j < RN; ++j) b[j] = w_sh[kk][tx + WG_X * j];
      for (int i = 0; i < RM; ++i)
        for (int j = 0; j < RN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int i = 0; i < RM; ++i) {
    const int m = m_base + ty + WG_Y * i;
    if (m >= M) continue;
    for (int j = 0; j < RN; ++j) {
      const int n = n_base + tx + WG_X * j;
      if (n < N) clq_store_out(y_gl, (size_t)m * N + n, acc[i][j]);
    }
  }
}
