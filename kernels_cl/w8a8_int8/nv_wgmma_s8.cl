// W8A8 int8 (SPEC section 7) on Hopper: wgmma.mma_async m64n128k32 s8 with exact int32 sums, on
// the FP8 prefill's pipeline (common/wgmma_gemm.clh: 128 x 128 tiles, STAGES x 32 KiB stages,
// a cp.async producer warpgroup, two consumer warpgroups on mbarriers). Chosen by the capability
// table only where the nv_wgmma probe passed.
//
// The sums need no fold per K step (one scale per row and per column), so a consumer runs its
// four k32 wgmma of a stage straight into the tile's int32 accumulators and the scales are
// applied once at the end, in the portable kernel's order (w8a8_int8/gemm.cl):
//   Y[m][n] = ((float)sum * s_a[m]) * s_w[n]
// so every output is bit-identical to the portable variant and the host twin. Under split-K
// each range stores its int32 partial and w8a8_int8_splitk_reduce adds them (exact, any order)
// before the same two products.
//   codes_gl: activation codes [M][Kp] (w8a8_int8/quant.cl with rows of Kp bytes, zero padded)
//   wrows_gl: weight codes [Npw][Kp], Npw = N rounded up to 128, padding rows and columns zero
#include "common/act_io.clh"
#include "common/wgmma_gemm.clh"

__kernel __attribute__((reqd_work_group_size(384, 1, 1)))
void w8a8_int8_gemm_wgmma(__global const uchar* restrict wrows_gl,  // [Npw][Kp]
                          __global const float* restrict sw_gl,     // [N]
                          __global const uchar* restrict codes_gl,  // [M][Kp]
                          __global const float* restrict sa_gl,     // [M]
                          __global int* restrict part_gl,           // [splits][M][N] when split
                          __global clq_out_t* restrict y_gl,        // [M][N] when not split
                          int M, int N, int Kp, int steps_per_split, int direct) {
  const int tid = get_local_id(0);
  const int wg = tid >> 7;
  const clq_wg_work w = clq_wg_begin(Kp / 128, steps_per_split);
  const int m0 = w.m0, n0 = w.n0, split = w.split, j_begin = w.j_begin, nblk = w.nsteps;
  const uint smem = w.smem, bars = w.bars;

  if (wg == 2) {
    clq_wg_produce(codes_gl, wrows_gl, M, Kp, m0, n0, j_begin, nblk, smem, bars);
    return;
  }

  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  int acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0;
  for (int x = 0; x < nblk; ++x) {
    const int slot = x % STAGES;
    const uint sb = smem + slot * STAGE_BYTES;
    clq_mbar_wait(bars + 8 * slot, (uint)(x / STAGES) & 1u);
    // The producer's cp.async writes are generic-proxy writes; wgmma reads through the async proxy.
    clq_wg_proxy_fence();
    clq_wg_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const ulong da = clq_wg_desc(sb + clq_wg_step_off(64 * wg, s, 32));
      const ulong db = clq_wg_desc(sb + A_BYTES + clq_wg_step_off(0, s, 32));
      clq_wg_mma_s8_n128(acc, da, db, 1);
    }
    clq_wg_commit();
    // No wgmma may stay in flight across the back edge (the compiler copies loop-carried
    // accumulators there), so each stage's four are waited for before it is released.
    clq_wg_wait0_n128_s32(acc);
    clq_mbar_arrive(bars + 8 * (STAGES + slot));
  }

  // acc[4i + 2h + e] = D[16 warp + g + 8h][8i + 2t + e] of this warpgroup's 64 rows.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int m = m0 + 64 * wg + 16 * warp + g + 8 * h;
    if (m >= M) continue;
    const float sa = direct ? sa_gl[m] : 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int n = n0 + 8 * i + 2 * t + e;
        if (n >= N) continue;
        const int v = acc[4 * i + 2 * h + e];
        if (direct) clq_store_out(y_gl, (size_t)m * N + n, ((float)v * sa) * sw_gl[n]);
        else part_gl[((size_t)split * M + m) * N + n] = v;
      }
  }
}

// The split-K ranges' int32 partials summed (exact), then the two scale products as above.
__kernel void w8a8_int8_splitk_reduce(__global const int* restrict part_gl, __global const float* restrict sa_gl,
                                      __global const float* restrict sw_gl, __global clq_out_t* restrict y_gl, int M,
                                      int N, int splits) {
  const int n = get_global_id(0), m = get_global_id(1);
  if (n >= N || m >= M) return;
  int s = 0;
  for (int i = 0; i < splits; ++i) s += part_gl[((size_t)i * M + m) * N + n];
  clq_store_out(y_gl, (size_t)m * N + n, ((float)s * sa_gl[m]) * sw_gl[n]);
}
