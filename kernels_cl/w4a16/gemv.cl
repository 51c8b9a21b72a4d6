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
// On the device the columns are padded to Np (a multiple of VEC_COLS) and stored in blocks of
// block_n columns, [Np/block_n][Kp/8][block_n] (host/caps/tuning.cpp): block_n = Np is the picture
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
#include "common/gemv_core.clh"

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
  const int n0 = get_global_id(0) * VEC_COLS;
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
  clq_w4_accumulate(q_rd, block_n, scales_gl + n0, zeros_gl + n0, Np, gstart_gl, wgroup_gl, x_rd, xw_rd, w_begin, w_end,
                    res);

  clq_store_rows(res, m0, M, n0, N, direct, y_gl, part_gl, split);
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
