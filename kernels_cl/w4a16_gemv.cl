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
//   scales_gl [G][Np] fp16, zeros_gl [G][Np] u8 (true zero), gstart_gl [G+1], wgroup_gl [Kp/8]
//
// On the device the columns are padded to Np (a multiple of GEMV_COLS) and stored in blocks of
// block_n columns, [Np/block_n][Kp/8][block_n] (host/tuning.cpp): block_n = Np is the picture
// above (GPUs: neighbouring work-items read neighbouring words); a CPU uses block_n = 16 so one
// work-item's walk down K is a contiguous stream instead of one page-sized stride per row.
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
#ifndef GEMV_COLS
#define GEMV_COLS 4  // adjacent columns per work-item: 4 = one 16-byte load per word row (GPU);
                     // 1 = one word per work-item, which CPU compilers vectorize across items
#endif

inline float4 clq_scales4(__global const ushort* p) {
  return (float4)(clq_fp16_to_f32(p[0]), clq_fp16_to_f32(p[1]), clq_fp16_to_f32(p[2]), clq_fp16_to_f32(p[3]));
}
inline float8 clq_scales8(__global const ushort* p) { return (float8)(clq_scales4(p), clq_scales4(p + 4)); }
inline float16 clq_scales16(__global const ushort* p) { return (float16)(clq_scales8(p), clq_scales8(p + 8)); }

#if GEMV_COLS == 16
typedef uint16 qvec_t;
typedef float16 fvec_t;
#define LOAD_Q(p) vload16(0, (p))
#define TO_F(v) convert_float16(v)
#define LOAD_Z(p) convert_float16(vload16(0, (p)))
#define LOAD_S(p) clq_scales16(p)
#define STORE_F(v, p) vstore16((v), 0, (p))
#elif GEMV_COLS == 8
typedef uint8 qvec_t;
typedef float8 fvec_t;
#define LOAD_Q(p) vload8(0, (p))
#define TO_F(v) convert_float8(v)
#define LOAD_Z(p) convert_float8(vload8(0, (p)))
#define LOAD_S(p) clq_scales8(p)
#define STORE_F(v, p) vstore8((v), 0, (p))
#elif GEMV_COLS == 4
typedef uint4 qvec_t;
typedef float4 fvec_t;
#define LOAD_Q(p) vload4(0, (p))
#define TO_F(v) convert_float4(v)
#define LOAD_Z(p) convert_float4(vload4(0, (p)))
#define LOAD_S(p) clq_scales4(p)
#define STORE_F(v, p) vstore4((v), 0, (p))
#elif GEMV_COLS == 1
typedef uint qvec_t;
typedef float fvec_t;
#define LOAD_Q(p) (*(p))
#define TO_F(v) ((float)(v))
#define LOAD_Z(p) ((float)*(p))
#define LOAD_S(p) clq_fp16_to_f32(*(p))
#define STORE_F(v, p) ((p)[0] = (v))
#else
#error "GEMV_COLS must be 1, 4, 8 or 16"
#endif

// acc += x . nibbles(q) for each of the GEMV_COLS columns in q. The gather pass stored row 8w+i
// of x pre-multiplied by 2^-4i (2^-24 for i = 7), so nibble i is used where it sits: masking
// gives nib * 2^4i, an exact float, and the product with the scaled x is exactly x * nib. That
// saves a shift per nibble; nibble 7 is shifted down by 4 so every masked value stays below
// 2^31 (signed conversion is the fast one everywhere).
inline fvec_t clq_dot_nibbles(fvec_t acc, float8 x, qvec_t q) {
  acc = fma((fvec_t)(x.s0), TO_F(q & 0x0000000Fu), acc);
  acc = fma((fvec_t)(x.s1), TO_F(q & 0x000000F0u), acc);
  acc = fma((fvec_t)(x.s2), TO_F(q & 0x00000F00u), acc);
  acc = fma((fvec_t)(x.s3), TO_F(q & 0x0000F000u), acc);
  acc = fma((fvec_t)(x.s4), TO_F(q & 0x000F0000u), acc);
  acc = fma((fvec_t)(x.s5), TO_F(q & 0x00F00000u), acc);
  acc = fma((fvec_t)(x.s6), TO_F(q & 0x0F000000u), acc);
  acc = fma((fvec_t)(x.s7), TO_F((q >> 4) & 0x0F000000u), acc);
  return acc;
}

__kernel void w4a16_gemv(__global const uint* restrict qw_gl,
                         __global const ushort* restrict scales_gl,
                         __global const uchar* restrict zeros_gl,
                         __global const int* restrict gstart_gl,
                         __global const int* restrict wgroup_gl,
                         __global const float* restrict xp_gl,   // [M][Kp] gathered, nibble-scaled x
                         __global const float* restrict xw_gl,   // [M][Kp/8] sum of each word's 8 x
                         __global float* restrict part_gl,       // [splits][M][N] when split
                         __global clq_out_t* restrict y_gl,      // [M][N] when not split
                         int M, int N, int Np, int block_n, int Kp, int words_per_split, int direct) {
  const int n0 = get_global_id(0) * GEMV_COLS;
  // Dimensions 1 and 2 have local size 1: group ids say so to the compiler, which keeps every
  // loop bound below uniform across the work-group (CPU compilers then vectorize across items).
  const int split = get_group_id(1);
  const int m0 = get_group_id(2) * GEMV_M;
  if (n0 >= Np) return;
  const int words = Kp / 8;
  // This work-item's columns: block n0 / block_n, offset n0 % block_n, one row every block_n words.
  const __global uint* q_rd = qw_gl + (size_t)(n0 / block_n) * words * block_n + (n0 % block_n);
  const int w_begin = split * words_per_split;
  const int w_end = min(words, w_begin + words_per_split);

  // Rows past M reuse row M-1 (always valid memory) and are never stored.
  const __global float* x_rd[GEMV_M];
  const __global float* xw_rd[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) {
    x_rd[i] = xp_gl + (size_t)min(m0 + i, M - 1) * Kp;
    xw_rd[i] = xw_gl + (size_t)min(m0 + i, M - 1) * (Kp / 8);
  }

  fvec_t res[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) res[i] = (fvec_t)(0.0f);

  int w = w_begin;
  while (w < w_end) {
    // A split may start or end inside a group: the folded sum is linear, so each part is exact.
    const int g = wgroup_gl[w];
    const int w_stop = min(gstart_gl[g + 1], w_end);
    fvec_t acc[GEMV_M];
    float xs[GEMV_M];
    for (int i = 0; i < GEMV_M; ++i) { acc[i] = (fvec_t)(0.0f); xs[i] = 0.0f; }
    for (; w < w_stop; ++w) {
      const qvec_t q = LOAD_Q(q_rd + (size_t)w * block_n);
      for (int i = 0; i < GEMV_M; ++i) {
        const float8 x = vload8(0, x_rd[i] + (size_t)w * 8);
        xs[i] += xw_rd[i][w];
        acc[i] = clq_dot_nibbles(acc[i], x, q);
      }
    }
    const size_t gi = (size_t)g * Np + n0;
    const fvec_t s = LOAD_S(scales_gl + gi);
    const fvec_t z = LOAD_Z(zeros_gl + gi);
    for (int i = 0; i < GEMV_M; ++i) res[i] = fma(s, acc[i] - z * xs[i], res[i]);
  }

  for (int i = 0; i < GEMV_M; ++i) {
    const int m = m0 + i;
    if (m >= M) break;
    float out[GEMV_COLS];
    STORE_F(res[i], out);
    for (int j = 0; j < GEMV_COLS; ++j) {
      const int n = n0 + j;
      if (n >= N) break;  // padding columns of the last block
      if (direct) clq_store_out(y_gl, (size_t)m * N + n, out[j]);
      else part_gl[((size_t)split * M + m) * N + n] = out[j];
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
