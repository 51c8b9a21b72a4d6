// Block-scaled W8A8 FP8 prefill on Hopper: wgmma.mma_async m64n128k32 e4m3 from shared-memory
// descriptors, STAGES x 32 KiB of stages in the module-scope array the PTX patch declares (up to
// 227 KiB, against 48 KiB of OpenCL __local). Chosen by the capability table only where the
// nv_wgmma probe passed (common/wgmma.clh).
//
// A work-group is three warpgroups and one 128 x 128 output tile, one pipeline step per 128-wide
// K block (the FP8 scale block):
//   warpgroup 2, the producer: cp.async of each step's stages, STAGES - 1 blocks ahead at most;
//     each of its work-items arrives on the stage's `full` mbarrier when its copies land;
//   warpgroups 0 and 1, the consumers (rows 64 wg .. 64 wg + 63): wait on `full`, run the four
//     k32 wgmma of the block into a fresh fp32 block sum, wait for them, release the stage on
//     its `empty` mbarrier, and fold (SPEC section 4, the order of fp8/nv_mma_e4m3.cl):
//       acc += block * sa[m][j] * sw[n/128][j]
// No work-group barrier inside the loop: the two consumers drift apart, so one folds while the
// other's wgmma runs, and the producer is never held by a fold.
//   A stage: activation codes [128 rows][128 bytes] (fp8/quant.cl, rows padded to Kp)
//   B stage: weight codes     [128 columns][128 bytes] (fp8/gemv.cl fp8_rows_from_blocks)
// both in the stage layout of common/wgmma.clh (128-byte swizzle). Rows past M load row M - 1
// (never stored); weight rows past N are zeros.
#include "common/act_io.clh"
#include "common/wgmma_gemm.clh"

#ifndef KNOCKOUT
#define KNOCKOUT 0  // measurement only: 1 = no wgmma issued (loads alone), 2 = no loads after the first STAGES,
                    // 3 = no proxy fence, 4 = no fold, 5 = neither loads (as 2) nor fold,
                    // 6 = wgmma alone (no loads, waits, fences or fold)
#endif

__kernel __attribute__((reqd_work_group_size(384, 1, 1)))
void fp8_block_gemm_wgmma(__global const uchar* restrict wrows_gl,  // [Npw][Kp] weight codes, Npw = 128 k
                          __global const float* restrict sw_gl,     // [Nb][Kb]
                          __global const uchar* restrict codes_gl,  // [M][Kp] activation codes
                          __global const float* restrict sa_gl,     // [M][Kb]
                          __global float* restrict part_gl,         // [splits][M][N] when split
                          __global clq_out_t* restrict y_gl,        // [M][N] when not split
                          int M, int N, int Kp, int blocks_per_split, int direct) {
  const int tid = get_local_id(0);
  const int wg = tid >> 7;
  const int Kb = Kp / 128;
  const clq_wg_work w = clq_wg_begin(Kb, blocks_per_split);
  const int m0 = w.m0, n0 = w.n0, split = w.split, j_begin = w.j_begin, nblk = w.nsteps;
  const uint smem = w.smem, bars = w.bars;

  if (wg == 2) {
    const int last = KNOCKOUT == 6 ? 0 : (KNOCKOUT == 2 || KNOCKOUT == 5) ? min(nblk, STAGES) : nblk;
    clq_wg_produce(codes_gl, wrows_gl, M, Kp, m0, n0, j_begin, last, smem, bars);
    return;
  }

  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int r_lo = min(m0 + 64 * wg + 16 * warp + g, M - 1), r_hi = min(m0 + 64 * wg + 16 * warp + g + 8, M - 1);
  const __global float* sw_rd = sw_gl + (size_t)(n0 / 128) * Kb + j_begin;
  const __global float* sa_rd = sa_gl + j_begin;
  const uint lo_off = (uint)r_lo * (uint)Kb, hi_off = (uint)r_hi * (uint)Kb;

  float acc[64], blk[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = blk[i] = 0.0f;
  for (int x = 0; x < nblk; ++x) {
    const int slot = x % STAGES;
    const uint sb = smem + slot * STAGE_BYTES;
    const float swj = sw_rd[x], s_lo = sa_rd[lo_off + x], s_hi = sa_rd[hi_off + x];
    if (KNOCKOUT != 6 && ((KNOCKOUT != 2 && KNOCKOUT != 5) || x < STAGES)) clq_mbar_wait(bars + 8 * slot, (uint)(x / STAGES) & 1u);
    // The producer's cp.async writes are generic-proxy writes; wgmma reads through the async proxy.
    if (KNOCKOUT != 3 && KNOCKOUT != 6) clq_wg_proxy_fence();
    clq_wg_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const ulong da = clq_wg_desc(sb + clq_wg_step_off(64 * wg, s, 32));
      const ulong db = clq_wg_desc(sb + A_BYTES + clq_wg_step_off(0, s, 32));
      if (KNOCKOUT != 1 || M < 0) clq_wg_mma_e4m3_n128(blk, da, db, s > 0);
    }
    clq_wg_commit();
    clq_wg_wait0_n128(blk);
    if (KNOCKOUT != 6) clq_mbar_arrive(bars + 8 * (STAGES + slot));
    if (KNOCKOUT >= 4 && x + 1 < nblk) continue;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      acc[4 * i + 0] += blk[4 * i + 0] * s_lo * swj;
      acc[4 * i + 1] += blk[4 * i + 1] * s_lo * swj;
      acc[4 * i + 2] += blk[4 * i + 2] * s_hi * swj;
      acc[4 * i + 3] += blk[4 * i + 3] * s_hi * swj;
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int m = m0 + 64 * wg + 16 * warp + g + 8 * h;
    if (m >= M) continue;
#pragma unroll
    for (int i = 0; i < 16; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int n = n0 + 8 * i + 2 * t + e;
        if (n >= N) continue;
        const float v = acc[4 * i + 2 * h + e];
        if (direct) clq_store_out(y_gl, (size_t)m * N + n, v);
        else part_gl[((size_t)split * M + m) * N + n] = v;
      }
  }
}
