// W4A16 for skinny M (decode): y[M][N] = x[M][K] @ W[K][N], memory bound on the weights.
//
// Weight layout (repacked once at load, host/formats/w4.cpp), Kp = K padded per group to whole
// words and overall to a multiple of 32 rows:
//
//            n ->  0    1    2    3   ...  N-1
//   qw_gl  w=0   [u32][u32][u32][u32] ... [u32]    word [w][n] holds rows 8w..8w+7 of column n,
//          w=1   [u32][u32][u32][u32] ... [u32]    row 8w+i in bits 4i..4i+3 (GPTQ's own packing,
//          ...                                     so a plain GPTQ checkpoint is copied as is)
//          Kp/8-1
//   scales_gl [G][N] fp16, zeros_gl [G][N] u8 (true zero), gstart_gl [G+1], wgroup_gl [Kp/8]
//
// Work split: one work-item owns 4 adjacent columns (one 16-byte uint4 load per word row:
// neighbouring work-items read neighbouring 16 bytes, so a warp reads 512 contiguous bytes) and
// GEMV_M rows of x; dimension 1 splits the word rows into SPLITS ranges (split-K) when N alone
// gives too few work-items to keep the memory system busy; dimension 2 walks M in GEMV_M tiles.
//
//   split 0: words [0, wps)        -> part[0][m][n]  \
//   split 1: words [wps, 2wps)     -> part[1][m][n]   >  w4a16_splitk_reduce sums and converts
//   ...                                              /
//
// The zero point is folded out of the inner loop: within a group
//   sum_k x_k * s * (q_k - z) = s * (sum_k x_k * q_k  -  z * sum_k x_k)
// so the loop does one FMA per nibble and one add per x element, and the scale/zero are read
// once per group. Each weight byte is read once per GEMV_M rows.
#include "common/act_io.clh"

#ifndef GEMV_M
#define GEMV_M 1  // rows of x per work-item (register tile); the host picks 1, 2 or 4
#endif

// acc += x . nibbles(w): nibble i of w pairs with x.si.
inline float clq_dot_nibbles(float acc, float8 x, uint w) {
  acc = fma(x.s0, (float)(w & 15u), acc);
  acc = fma(x.s1, (float)((w >> 4) & 15u), acc);
  acc = fma(x.s2, (float)((w >> 8) & 15u), acc);
  acc = fma(x.s3, (float)((w >> 12) & 15u), acc);
  acc = fma(x.s4, (float)((w >> 16) & 15u), acc);
  acc = fma(x.s5, (float)((w >> 20) & 15u), acc);
  acc = fma(x.s6, (float)((w >> 24) & 15u), acc);
  acc = fma(x.s7, (float)(w >> 28), acc);
  return acc;
}

__kernel void w4a16_gemv(__global const uint* restrict qw_gl,
                         __global const ushort* restrict scales_gl,
                         __global const uchar* restrict zeros_gl,
                         __global const int* restrict gstart_gl,
                         __global const int* restrict wgroup_gl,
                         __global const float* restrict xp_gl,   // [M][Kp] gathered activations
                         __global float* restrict part_gl,       // [splits][M][N] when split
                         __global clq_out_t* restrict y_gl,      // [M][N] when not split
                         int M, int N, int Kp, int words_per_split, int direct) {
  const int n0 = get_global_id(0) * 4;
  const int split = get_global_id(1);
  const int m0 = get_global_id(2) * GEMV_M;
  if (n0 >= N || m0 >= M) return;
  const int words = Kp / 8;
  const int w_begin = split * words_per_split;
  const int w_end = min(words, w_begin + words_per_split);

  // Rows past M reuse row M-1 (always valid memory) and are never stored.
  const __global float* x_rd[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) x_rd[i] = xp_gl + (size_t)min(m0 + i, M - 1) * Kp;

  float4 res[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) res[i] = (float4)(0.0f);

  int w = w_begin;
  while (w < w_end) {
    // A split may start or end inside a group: the folded sum is linear, so each part is exact.
    const int g = wgroup_gl[w];
    const int w_stop = min(gstart_gl[g + 1], w_end);
    float4 acc[GEMV_M];
    float xs[GEMV_M];
    for (int i = 0; i < GEMV_M; ++i) { acc[i] = (float4)(0.0f); xs[i] = 0.0f; }
    for (; w < w_stop; ++w) {
      const uint4 q = vload4(0, qw_gl + (size_t)w * N + n0);
      for (int i = 0; i < GEMV_M; ++i) {
        const float8 x = vload8(0, x_rd[i] + (size_t)w * 8);
        xs[i] += ((x.s0 + x.s1) + (x.s2 + x.s3)) + ((x.s4 + x.s5) + (x.s6 + x.s7));
        acc[i].x = clq_dot_nibbles(acc[i].x, x, q.x);
        acc[i].y = clq_dot_nibbles(acc[i].y, x, q.y);
        acc[i].z = clq_dot_nibbles(acc[i].z, x, q.z);
        acc[i].w = clq_dot_nibbles(acc[i].w, x, q.w);
      }
    }
    const size_t gi = (size_t)g * N + n0;
    const float4 s = (float4)(clq_fp16_to_f32(scales_gl[gi]), clq_fp16_to_f32(scales_gl[gi + 1]),
                              clq_fp16_to_f32(scales_gl[gi + 2]), clq_fp16_to_f32(scales_gl[gi + 3]));
    const float4 z = convert_float4(vload4(0, zeros_gl + gi));
    for (int i = 0; i < GEMV_M; ++i) res[i] = fma(s, acc[i] - z * xs[i], res[i]);
  }

  for (int i = 0; i < GEMV_M; ++i) {
    const int m = m0 + i;
    if (m >= M) break;
    if (direct) {
      const size_t o = (size_t)m * N + n0;
      clq_store_out(y_gl, o, res[i].x);
      clq_store_out(y_gl, o + 1, res[i].y);
      clq_store_out(y_gl, o + 2, res[i].z);
      clq_store_out(y_gl, o + 3, res[i].w);
    } else {
      vstore4(res[i], 0, part_gl + ((size_t)split * M + m) * N + n0);
    }
  }
}

// Sums the split-K partials in a fixed order (deterministic) and rounds once to the output type.
__kernel void w4a16_splitk_reduce(__global const float* restrict part_gl, __global clq_out_t* restrict y_gl,
                                  int M, int N, int splits) {
  const int n = get_global_id(0);
  const int m = get_global_id(1);
  if (n >= N || m >= M) return;
  float s = 0.0f;
  for (int i = 0; i < splits; ++i) s += part_gl[((size_t)i * M + m) * N + n];
  clq_store_out(y_gl, (size_t)m * N + n, s);
}
