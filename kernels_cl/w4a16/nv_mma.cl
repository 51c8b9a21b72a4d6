// W4A16 on NVIDIA tensor cores (sm80+), from OpenCL C through inline PTX mma.sync.m16n8k16.
// Chosen by the capability table only where the known-answer probe (probe/nv_mma_f16.cl) passed;
// PoCL and other devices never build this file.
//
// Work split: a work-group is 4 warps; warp w owns NF fragments of 8 columns of MT 16-row M tiles
// (16 * MT rows), over one split-K range of word rows:
//
//   columns:   | warp 0: NF*8 cols | warp 1 | warp 2 | warp 3 |      (work-group = 4 * NF * 8 cols)
//   rows:      16 * MT per work-group (dimension 2); rows past M read as zero, never stored
//   K:         words [split * wps, (split + 1) * wps), two words (16 rows) per mma step
//
// Fragments (PTX ISA, m16n8k16, lane = 4g + t):
//   A (activations, row-major): a0 = x[g][2t, 2t+1], a1 = x[g+8][..], a2 = x[g][2t+8, 2t+9], a3 = both
//       read as one 32-bit load each from xh, the gather pass's 16-bit copy of x (fp16, or bf16
//       when the activations are bf16, then the bf16 mma runs). Exact for fp16/bf16 input.
//   B (weights, col-major):    b0 = W[2t, 2t+1][n], b1 = W[2t+8, 2t+9][n],  n = fragment column g
//       word (w, n) of the int4 layout (w4a16/gemv.cl) holds rows 8w..8w+7, so b0 is nibbles 2t,
//       2t+1 of word w and b1 the same nibbles of word w+1.
//   C/D (fp32):                c0, c1 = rows g, columns 2t, 2t+1; c2, c3 = rows g+8.
//
// Numerics: B holds q - z, small integers that fp16 and bf16 represent exactly, so every product
// in the tensor core is exact; the per-column scale is applied to each 16-row step's fp32 result
// (acc += mma(A, q - z) * s). Rounding a dequantized (q - z) * s to a 16-bit operand instead
// costs 2^-9 relative per weight in bf16, which measured 1.6e-3 mean error: over SPEC's 1e-3.
// A step whose two words lie in different groups (act-order padding) runs as two half-steps.
// A warp reuses each B fragment for MT row tiles, so dequantization costs once per 16 * MT rows.
#include "common/act_io.clh"
#include "common/nv_mma.clh"

#ifndef NF
#define NF 8  // 8-column fragments per warp
#endif
#ifndef MT
#define MT 1  // 16-row tiles per warp (the host picks 4 once M is large)
#endif
#define WARPS 4

// Two small integers -> one register of two exact 16-bit values; `lo` is the lower index.
inline uint clq_pack_int2(int lo, int hi) { return clq_pack2((float)lo, (float)hi); }

__kernel __attribute__((reqd_work_group_size(32 * WARPS, 1, 1)))
void w4a16_gemm_nv_mma(__global const uint* restrict qw_gl,
                       __global const ushort* restrict scales_gl,
                       __global const uchar* restrict zeros_gl,
                       __global const int* restrict wgroup_gl,
                       __global const ushort* restrict xh_gl,  // [M][Kp] fp16/bf16 bits
                       __global float* restrict part_gl,       // [splits][M][N] when split
                       __global clq_out_t* restrict y_gl,      // [M][N] when not split
                       int M, int N, int Np, int block_n, int Kp, int words_per_split, int direct) {
  const int lane = get_local_id(0) & 31, warp = get_local_id(0) >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n_tile = (get_group_id(0) * WARPS + warp) * (NF * 8);
  if (n_tile >= Np) return;  // whole warps only: mma.sync needs all 32 lanes
  const int split = get_group_id(1);
  const int m0 = get_group_id(2) * 16 * MT;
  const int words = Kp / 8;
  const int w_begin = split * words_per_split;
  const int w_end = min(words, w_begin + words_per_split);

  // Activation rows of each tile (zero beyond M).
  const __global ushort* xa[MT];
  const __global ushort* xb[MT];
  uint mask_a[MT], mask_b[MT];
  for (int i = 0; i < MT; ++i) {
    const int ra = m0 + 16 * i + g, rb = ra + 8;
    xa[i] = xh_gl + (size_t)min(ra, M - 1) * Kp + 2 * t;
    xb[i] = xh_gl + (size_t)min(rb, M - 1) * Kp + 2 * t;
    mask_a[i] = ra < M ? 0xFFFFFFFFu : 0u;
    mask_b[i] = rb < M ? 0xFFFFFFFFu : 0u;
  }
  // Weight column g of each fragment (B), and the two columns 2t, 2t+1 of its result (C).
  const __global uint* q_rd[NF];
  int colb[NF], colc[NF];
  for (int f = 0; f < NF; ++f) {
    colb[f] = min(n_tile + f * 8 + g, Np - 1);
    colc[f] = min(n_tile + f * 8 + 2 * t, Np - 2);
    q_rd[f] = qw_gl + (size_t)(colb[f] / block_n) * words * block_n + (colb[f] % block_n);
  }
  float acc[NF][MT][4];
  for (int f = 0; f < NF; ++f)
    for (int i = 0; i < MT; ++i)
      for (int r = 0; r < 4; ++r) acc[f][i][r] = 0.0f;

  const uint sh = 8u * (uint)t;  // nibbles 2t and 2t+1 of a word
  for (int w = w_begin; w < w_end; w += 2) {
    const int k0 = w * 8;
    uint a[MT][4];
    for (int i = 0; i < MT; ++i) {
      a[i][0] = *(const __global uint*)(xa[i] + k0) & mask_a[i];
      a[i][1] = *(const __global uint*)(xb[i] + k0) & mask_b[i];
      a[i][2] = *(const __global uint*)(xa[i] + k0 + 8) & mask_a[i];
      a[i][3] = *(const __global uint*)(xb[i] + k0 + 8) & mask_b[i];
    }
    const int grp0 = wgroup_gl[w], grp1 = wgroup_gl[w + 1];
    const size_t g0 = (size_t)grp0 * Np, g1 = (size_t)grp1 * Np;
    for (int f = 0; f < NF; ++f) {
      const uint q0 = q_rd[f][(size_t)w * block_n], q1 = q_rd[f][(size_t)(w + 1) * block_n];
      const int z0 = zeros_gl[g0 + colb[f]], z1 = zeros_gl[g1 + colb[f]];
      const uint b0 = clq_pack_int2((int)((q0 >> sh) & 15u) - z0, (int)((q0 >> (sh + 4u)) & 15u) - z0);
      const uint b1 = clq_pack_int2((int)((q1 >> sh) & 15u) - z1, (int)((q1 >> (sh + 4u)) & 15u) - z1);
      const float s00 = clq_fp16_to_f32(scales_gl[g0 + colc[f]]), s01 = clq_fp16_to_f32(scales_gl[g0 + colc[f] + 1]);
      if (grp0 == grp1) {  // the usual case: one group for all 16 rows (uniform across the warp)
        for (int i = 0; i < MT; ++i) {
          float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          clq_mma16816(c, a[i][0], a[i][1], a[i][2], a[i][3], b0, b1);
          acc[f][i][0] = fma(c[0], s00, acc[f][i][0]);
          acc[f][i][1] = fma(c[1], s01, acc[f][i][1]);
          acc[f][i][2] = fma(c[2], s00, acc[f][i][2]);
          acc[f][i][3] = fma(c[3], s01, acc[f][i][3]);
        }
      } else {  // rows 0-7 and 8-15 belong to different groups: two half-steps
        const float s10 = clq_fp16_to_f32(scales_gl[g1 + colc[f]]), s11 = clq_fp16_to_f32(scales_gl[g1 + colc[f] + 1]);
        for (int i = 0; i < MT; ++i) {
          float c[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          clq_mma16816(c, a[i][0], a[i][1], a[i][2], a[i][3], b0, 0u);
          clq_mma16816(d, a[i][0], a[i][1], a[i][2], a[i][3], 0u, b1);
          acc[f][i][0] += c[0] * s00 + d[0] * s10;
          acc[f][i][1] += c[1] * s01 + d[1] * s11;
          acc[f][i][2] += c[2] * s00 + d[2] * s10;
          acc[f][i][3] += c[3] * s01 + d[3] * s11;
        }
      }
    }
  }

  for (int f = 0; f < NF; ++f) {
    const int c0 = n_tile + f * 8 + 2 * t;
    for (int i = 0; i < MT; ++i)
      for (int h = 0; h < 2; ++h) {  // h = 0: row g, h = 1: row g + 8
        const int m = m0 + 16 * i + g + 8 * h;
        if (m >= M) continue;
        for (int j = 0; j < 2; ++j) {
          const int n = c0 + j;
          if (n >= N) continue;
          const float v = acc[f][i][2 * h + j];
          if (direct) clq_store_out(y_gl, (size_t)m * N + n, v);
          else part_gl[((size_t)split * M + m) * N + n] = v;
        }
      }
  }
}
