// Block-scaled FP8 GEMM for skinny M, e4m3 decoded in software (runs on any OpenCL device).
//   Y[m][n] = sum_j ( sum_{k in block j} xq[m][k] * w[n][k] ) * sa[m][j] * sw[n/128][j]
// fp32 accumulation inside each 128-wide K block, scales applied when the block is done
// (two-level accumulation, as DeepSeek-V3 / vLLM define it). The same kernel serves per-tensor
// FP8 (scales broadcast into every block) and weight-only w8a16 (xq = the fp16/bf16 activations
// widened, sa = 1): see host/ops/fp8/fp8_gemm.cpp.
//
// Weight layout (repacked once at load), Kp = K rounded up to 128, Np = N padded to VEC_COLS:
//
//            n ->  0     1     2    ...
//   qw_gl  w=0   [u32] [u32] [u32]       word [w][n] holds w[n][4w .. 4w+3], byte i = k % 4
//          w=1   [u32] [u32] [u32]       (HF stores [N][K]; the repack transposes to K-major so
//          ...                            neighbouring work-items read neighbouring words)
//          Kp/4-1
//
// stored in column blocks of block_n, [Np/block_n][Kp/4][block_n], exactly as the int4 kernels
// (host/caps/tuning.cpp): GPUs use one block, CPUs 16-column blocks so each work-item streams.
// Work split as in w4a16/gemv.cl: VEC_COLS columns x GEMV_M rows per work-item, split-K over
// whole 128-blocks in dimension 1, M tiles in dimension 2. Decoding a weight costs about nine
// integer/float operations; it is done once per GEMV_M rows.
#include "common/act_io.clh"
#include "common/gemv_core.clh"

__kernel void fp8_block_gemv(__global const uint* restrict qw_gl,
                             __global const float* restrict sw_gl,   // [Nb][Kb]
                             __global const float* restrict xq_gl,   // [M][Kp]
                             __global const float* restrict sa_gl,   // [M][Kb]
                             __global float* restrict part_gl,       // [splits][M][N] when split
                             __global clq_out_t* restrict y_gl,      // [M][N] when not split
                             int M, int N, int Np, int block_n, int Kp, int blocks_per_split, int direct) {
  const int n0 = get_global_id(0) * VEC_COLS;
  const int split = get_group_id(1);
  const int m0 = get_group_id(2) * GEMV_M;
  if (n0 >= Np) return;
  const int Kb = Kp / 128;
  const int words = Kp / 4;
  const int j_begin = split * blocks_per_split;
  const int j_end = min(Kb, j_begin + blocks_per_split);
  const __global uint* q_rd = qw_gl + (size_t)(n0 / block_n) * words * block_n + (n0 % block_n);
  // VEC_COLS divides 128, so all of this work-item's columns share one 128-row scale block.
  const __global float* sw_rd = sw_gl + (size_t)(n0 / 128) * Kb;
  const __global float* x_rd[GEMV_M];
  const __global float* sa_rd[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) {
    const int m = min(m0 + i, M - 1);
    x_rd[i] = xq_gl + (size_t)m * Kp;
    sa_rd[i] = sa_gl + (size_t)m * Kb;
  }
  fvec_t res[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) res[i] = (fvec_t)(0.0f);
  clq_fp8_accumulate(q_rd, block_n, sw_rd, x_rd, sa_rd, j_begin, j_end, res);

  clq_store_rows(res, m0, M, n0, N, direct, y_gl, part_gl, split);
}

// Sums split-K partials in a fixed order and rounds once to the output type.
__kernel void fp8_splitk_reduce(__global const float* restrict part_gl, __global clq_out_t* restrict y_gl, int M,
                                int N, int splits) {
  const int n = get_global_id(0);
  const int m = get_global_id(1);
  if (n >= N || m >= M) return;
  float s = 0.0f;
  for (int i = 0; i < splits; ++i) s += part_gl[((size_t)i * M + m) * N + n];
  clq_store_out(y_gl, (size_t)m * N + n, s);
}

// Per-channel weight scales (compressed-tensors FP8 channel strategy): the GEMM ran with unit
// weight scales into fp32; each column is scaled here and rounded once to the output type.
__kernel void fp8_channel_scale(__global const float* restrict acc_gl, __global const float* restrict sn_gl,
                                __global clq_out_t* restrict y_gl, int M, int N) {
  const int n = get_global_id(0);
  const int m = get_global_id(1);
  if (n >= N || m >= M) return;
  clq_store_out(y_gl, (size_t)m * N + n, acc_gl[(size_t)m * N + n] * sn_gl[n]);
}

// The weight codes row by row ([Npw][Kp] bytes, K contiguous: the operand layout wgmma reads),
// from the column-block K-major words above; rows N..Npw-1 are zeros. One word per work-item.
__kernel void fp8_rows_from_blocks(__global const uint* restrict qw_gl, __global uint* restrict rows_gl, int N,
                                   int Npw, int block_n, int Kp) {
  const int w = get_global_id(0);
  const int n = get_global_id(1);
  const int words = Kp / 4;
  if (w >= words || n >= Npw) return;
  rows_gl[(size_t)n * words + w] =
      n < N ? qw_gl[(size_t)(n / block_n) * words * block_n + (size_t)w * block_n + n % block_n] : 0u;
}
