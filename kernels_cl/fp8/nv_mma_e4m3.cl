// Block-scaled W8A8 FP8 on NVIDIA tensor cores (sm89+), inline PTX mma.sync.m16n8k32 e4m3.
// Chosen by the capability table only where the e4m3 known-answer probe passed.
//
// Nothing is decoded: A is the activation quantizer's e4m3 codes (fp8/quant.cl, rows padded to
// Kp with +0 codes) and B is the weight repack's K-major words (fp8/gemv.cl), which
// are the mma's B fragments as they stand:
//
//   A (row-major 16x32): a0 = codes[g][4t..4t+3], a1 = row g+8, a2 = cols +16, a3 = both
//   B (col-major 32x8):  b0 = W[4t..4t+3][n] = word (k0/4 + t, n), b1 = word (k0/4 + 4 + t, n)
//   C (fp32):            c0, c1 = row g, columns 2t, 2t+1; c2, c3 = row g+8            (lane = 4g + t)
//
// Two-level accumulation (SPEC section 4): the four k32 steps of a 128-wide K block accumulate
// into a fresh fp32 block sum (products of e4m3 values are exact), then
//   acc += block * sa[m][j] * sw[n/128][j].
// Work split as in w4a16/nv_mma.cl: 4 warps per work-group, each NF 8-column fragments of MT
// 16-row tiles over a split-K range of whole 128-blocks; NF * 8 divides 128, so one warp's
// columns share one weight scale block.
#include "common/act_io.clh"

#ifndef NF
#define NF 8
#endif
#ifndef MT
#define MT 1
#endif
#define WARPS 4

inline void clq_mma_e4m3(float* c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__kernel __attribute__((reqd_work_group_size(32 * WARPS, 1, 1)))
void fp8_block_gemm_nv_mma(__global const uint* restrict qw_gl,     // K-major words, column blocks
                           __global const float* restrict sw_gl,    // [Nb][Kb]
                           __global const uchar* restrict codes_gl, // [M][Kp] activation codes
                           __global const float* restrict sa_gl,    // [M][Kb]
                           __global float* restrict part_gl,        // [splits][M][N] when split
                           __global clq_out_t* restrict y_gl,       // [M][N] when not split
                           int M, int N, int Np, int block_n, int Kp, int blocks_per_split, int direct) {
  const int lane = get_local_id(0) & 31, warp = get_local_id(0) >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n_tile = (get_group_id(0) * WARPS + warp) * (NF * 8);
  if (n_tile >= Np) return;  // whole warps only
  const int split = get_group_id(1);
  const int m0 = get_group_id(2) * 16 * MT;
  const int Kb = Kp / 128, words = Kp / 4;
  const int j_begin = split * blocks_per_split;
  const int j_end = min(Kb, j_begin + blocks_per_split);

  const __global uchar* xa[MT];
  const __global uchar* xb[MT];
  uint mask_a[MT], mask_b[MT];
  int ra[MT], rb[MT];
  for (int i = 0; i < MT; ++i) {
    ra[i] = min(m0 + 16 * i + g, M - 1);
    rb[i] = min(m0 + 16 * i + g + 8, M - 1);
    xa[i] = codes_gl + (size_t)ra[i] * Kp + 4 * t;
    xb[i] = codes_gl + (size_t)rb[i] * Kp + 4 * t;
    mask_a[i] = m0 + 16 * i + g < M ? 0xFFFFFFFFu : 0u;
    mask_b[i] = m0 + 16 * i + g + 8 < M ? 0xFFFFFFFFu : 0u;
  }
  const __global uint* q_rd[NF];
  for (int f = 0; f < NF; ++f) {
    const int n = min(n_tile + f * 8 + g, Np - 1);
    q_rd[f] = qw_gl + (size_t)(n / block_n) * words * block_n + (n % block_n) + (size_t)t * block_n;
  }
  const __global float* sw_rd = sw_gl + (size_t)(n_tile / 128) * Kb;
  float acc[NF][MT][4];
  for (int f = 0; f < NF; ++f)
    for (int i = 0; i < MT; ++i)
      for (int r = 0; r < 4; ++r) acc[f][i][r] = 0.0f;

  for (int j = j_begin; j < j_end; ++j) {
    float blk[NF][MT][4];
    for (int f = 0; f < NF; ++f)
      for (int i = 0; i < MT; ++i)
        for (int r = 0; r < 4; ++r) blk[f][i][r] = 0.0f;
    for (int k0 = j * 128; k0 < (j + 1) * 128; k0 += 32) {
      uint a[MT][4];
      for (int i = 0; i < MT; ++i) {
        a[i][0] = *(const __global uint*)(xa[i] + k0) & mask_a[i];
        a[i][1] = *(const __global uint*)(xb[i] + k0) & mask_b[i];
        a[i][2] = *(const __global uint*)(xa[i] + k0 + 16) & mask_a[i];
        a[i][3] = *(const __global uint*)(xb[i] + k0 + 16) & mask_b[i];
      }
      const int w = k0 / 4;
      for (int f = 0; f < NF; ++f) {
        const uint b0 = q_rd[f][(size_t)w * block_n], b1 = q_rd[f][(size_t)(w + 4) * block_n];
        for (int i = 0; i < MT; ++i) clq_mma_e4m3(blk[f][i], a[i][0], a[i][1], a[i][2], a[i][3], b0, b1);
      }
    }
    const float swj = sw_rd[j];
    for (int i = 0; i < MT; ++i) {
      const float sa_a = sa_gl[(size_t)ra[i] * Kb + j], sa_b = sa_gl[(size_t)rb[i] * Kb + j];
      for (int f = 0; f < NF; ++f) {
        acc[f][i][0] += blk[f][i][0] * sa_a * swj;
        acc[f][i][1] += blk[f][i][1] * sa_a * swj;
        acc[f][i][2] += blk[f][i][2] * sa_b * swj;
        acc[f][i][3] += blk[f][i][3] * sa_b * swj;
      }
    }
  }

  for (int f = 0; f < NF; ++f) {
    const int c0 = n_tile + f * 8 + 2 * t;
    for (int i = 0; i < MT; ++i)
      for (int h = 0; h < 2; ++h) {
        const int m = m0 + 16 * i + g + 8 * h;
        if (m >= M) continue;
        for (int jj = 0; jj < 2; ++jj) {
          const int n = c0 + jj;
          if (n >= N) continue;
          const float v = acc[f][i][2 * h + jj];
          if (direct) clq_store_out(y_gl, (size_t)m * N + n, v);
          else part_gl[((size_t)split * M + m) * N + n] = v;
        }
      }
  }
}
