// W8A16 int8 for larger M (prefill): local-memory tiles, each weight tile dequantized once per
// work-group and reused for TILE_M rows of x. Weight layout as w8a16_int8/gemv.cl.
//
//   xp_gl [M][Kp] fp32 (gathered)          qw_gl [Kp/4][N] 8-bit codes, 4 rows to a word
//   x_sh[TILE_K][TILE_M]  <- transposed    w_sh[TILE_K][TILE_N] <- (q - z) * s, exact in fp32
//                                                                  up to the one product rounding
// Work-group 16 x 16; work-item (tx, ty) accumulates rows ty + 16i and columns tx + 16j (i, j < 4),
// strided so neighbouring work-items touch neighbouring local words. Kp is a multiple of
// TILE_K = 32 (the repacker pads it), so no K tail exists; M and N tails are guarded. Groups may
// change at any word row: each word row looks up its own group.
#include "common/act_io.clh"

#define TILE_M 64  // rows of x per work-group
#define TILE_N 64  // columns per work-group
#define TILE_K 32  // rows of K per step: 8 words (fixed by the repacker's padding)
#define WG_X 16
#define WG_Y 16
#define RM (TILE_M / WG_Y)
#define RN (TILE_N / WG_X)

__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void w8a16_int8_gemm_tiled(__global const uint* restrict qw_gl,
                           __global const float* restrict scales_gl,
                           __global const ushort* restrict zeros_gl,
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
  const int words = Kp / 4;

  float acc[RM][RN];
  for (int i = 0; i < RM; ++i)
    for (int j = 0; j < RN; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < Kp; k0 += TILE_K) {
    // x tile: TILE_M x TILE_K floats, 4 consecutive k per load.
    for (int e = lid; e < TILE_M * (TILE_K / 4); e += WG_X * WG_Y) {
      const int r = e / (TILE_K / 4), c = (e % (TILE_K / 4)) * 4;
      const int m = m_base + r;
      const float4 v = m < M ? vload4(0, xp_gl + (size_t)m * Kp + k0 + c) : (float4)(0.0f);
      x_sh[c + 0][r] = v.s0; x_sh[c + 1][r] = v.s1; x_sh[c + 2][r] = v.s2; x_sh[c + 3][r] = v.s3;
    }
    // w tile: TILE_K/4 word rows x TILE_N columns, each word dequantized into 4 rows.
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
