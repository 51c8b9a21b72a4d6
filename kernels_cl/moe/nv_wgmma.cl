// The fused MoE's grouped expert GEMMs for prefill on Hopper (fused_moe/nv_wgmma): register-A
// wgmma m64n128k16 over 16-bit experts, on the stage hand-over of the other sm_90a GEMMs
// (common/wgmma_gemm.clh: GROUP_M raster, mbarriers, one cp.async producer warpgroup, CWG = 2
// consumers). Only built where the nv_wgmma probe passed.
//
// A work-group owns one aligned block of TOK = 128 sorted slots (one expert: moe/align.cl with
// block_size 128) and 128 weight columns. As in w4a16/nv_wgmma.cl the tensor cores compute
// y^T = W^T x^T: the M of wgmma is 64 weight columns per consumer warpgroup (A, from registers)
// and its N is the 128 slots (B, the activation rows in the 128-byte swizzle of common/wgmma.clh,
// gathered through sorted_token_ids by the producer: the gather is in the loads).
//
// The experts' weights stay in the layout every other MoE path reads, [E][Kp][Np] with the
// columns contiguous, so a 64-row chunk of 16 weight columns is not a K-major operand. The
// producer copies each (k, 8 columns) piece to .shared and the consumers build the A fragment
// with ldmatrix.trans, which transposes 8x8 16-bit tiles on the way to the registers. A warp's
// tile (16 rows of A) is 2 pieces x 64 k in .shared, [tile][piece][k] x 16 bytes: the 8 rows one
// ldmatrix phase reads are 128 contiguous bytes, so the reads are free of bank conflicts.
//
//   MODE 0 (gate_up): the warp's rows 0-7 are gate columns c .. c+7 and rows 8-15 the up columns
//     I+c .. I+c+7, so each lane holds gate and up of one (slot, column) in the accumulator
//     layout itself, and the SwiGLU a = silu(g) * u is done in registers. a goes on to the down
//     GEMM as two 16-bit arrays, hi = round(a) and lo = round(a - hi): the down GEMM's B operand
//     must be 16-bit, and hi alone would round every a (about 1e-3 relative in bf16, the whole
//     tolerance); hi + lo carries a to about 2^-17. Columns in [I, lda) get 0 (the down GEMM's K
//     padding).
//   MODE 1 (down): rows 0-15 of a warp are 16 consecutive output columns. Each k16 step runs two
//     wgmma, on the hi and on the lo tile of the stage. The epilogue multiplies by the routing
//     weight and stores the slot's fp32 row of y2; moe_combine (moe/general.cl) sums a token's
//     k rows in order and rounds once.
//
// Stage (one 64-row chunk of K): [0, XT * 16384) the activation tile(s), then the weights,
// 8 warp tiles x 2048 bytes. Padding slots (sentinel ids) read token row 0 in MODE 0 and are
// never stored; blocks past num_post_padded and blocks of non-local experts (-1) exit at once.
#include "common/act_io.clh"

#define CWG 2
#define CLQ_WG_CONSUMERS CWG
#define TOK 128
#define BM TOK
#define BN (64 * CWG)
#ifndef MODE
#define MODE 0
#endif
#if MODE == 0
#define XT 1
#else
#define XT 2  // hi and lo tiles of a
#endif
#define ST_W (XT * TOK * 128)
#define NT (4 * CWG)  // warp tiles of a work-group
#define STAGE_BYTES (ST_W + NT * 2048)
#ifndef STAGES
#define STAGES (MODE == 0 ? 6 : 4)
#endif
#ifndef TURN
#define TURN 2
#endif
#ifndef MMA_BF16
#define MMA_BF16 1
#endif
#ifndef KO
#define KO 0  // knock-out builds (measurement only): 1 = no wgmma, 2 = no copies (stages arrive empty)
#endif
#include "common/wgmma_gemm.clh"

// Four 8x8 16-bit tiles from .shared, transposed: lanes 8j .. 8j+7 name the rows of tile j,
// register j receives it.
CLQ_INLINE void clq_ldm_x4_trans(uint* r, uint addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

CLQ_INLINE ushort clq_moe_to16(float v) { return MMA_BF16 ? clq_f32_to_bf16(v) : clq_f32_to_fp16(v); }
CLQ_INLINE float clq_moe_from16(ushort h) { return MMA_BF16 ? clq_bf16_to_f32(h) : clq_fp16_to_f32(h); }

// Chunk x into acc with A register set `as` (a + 0 or a + 16; a names both for the waits): one
// group of wgmma stays in flight while the next chunk's A registers are loaded, and the stage of
// chunk x - 1 is released once only chunk x's group can still be running (the turn's end
// releases its last chunk).
CLQ_INLINE void clq_moe_chunk(uint smem, uint bars, uint a_at, float* acc, uint* a, uint* as, int x, bool first) {
  const int slot = x % STAGES;
  const uint sb = smem + slot * STAGE_BYTES;
  clq_mbar_wait(bars + 8 * slot, (uint)(x / STAGES) & 1u);
#pragma unroll
  for (int s = 0; s < 4; ++s) clq_ldm_x4_trans(as + 4 * s, sb + a_at + 256u * s);
  // The producer's cp.async writes are generic-proxy writes; wgmma reads B through the async proxy.
  clq_wg_proxy_fence();
  clq_wg_fence();
#pragma unroll
  for (int s = 0; s < 4 * (KO != 1); ++s) {
    clq_wg_mma_rs_n128(acc, as + 4 * s, clq_wg_desc(sb + clq_wg_step_off(0, s, 32)), 1);
#if MODE == 1
    clq_wg_mma_rs_n128(acc, as + 4 * s, clq_wg_desc(sb + TOK * 128 + clq_wg_step_off(0, s, 32)), 1);
#endif
  }
  clq_wg_commit();
  clq_wg_wait1_rs32(acc, a);
  if (!first) clq_mbar_arrive(bars + 8 * (STAGES + (x + STAGES - 1) % STAGES));
}

__kernel __attribute__((reqd_work_group_size(128 * (CWG + 1), 1, 1)))
void moe_gemm_nv_wgmma(__global const uchar* restrict w_gl, long w_stride,  // [E][Kp][Np] 16-bit, bytes per expert
                       int Np,                                              // weight row length (elements)
                       __global const uchar* restrict x_gl,    // MODE 0: x [T][ldx]; MODE 1: a hi [S][ldx]
                       __global const uchar* restrict xlo_gl,  // MODE 1: a lo [S][ldx]
                       int ldx_bytes,
                       __global const int* restrict sorted_gl, __global const int* restrict expert_ids_gl,
                       __global const int* restrict npp_gl, __global const float* restrict topk_w_gl,
                       __global ushort* restrict ahi_gl, __global ushort* restrict alo_gl, int lda,  // MODE 0 out
                       __global float* restrict y2_gl,                                               // MODE 1 out
                       int N,  // MODE 0: I (columns of a); MODE 1: H (columns of y2)
                       int chunks, int topk, int TK) {
  int m0, n0;
  clq_wg_tile(&m0, &n0);
  if (m0 >= npp_gl[0]) return;  // the whole work-group: before any barrier
  const int e = expert_ids_gl[m0 / TOK];
  if (e < 0) return;
  const clq_wg_work w = clq_wg_begin(chunks, chunks);
  const uint smem = w.smem, bars = w.bars;
  const int tid = get_local_id(0);
  const int wg = tid >> 7;
#if MODE == 0
  const int c0 = n0 / 2;  // first column of a: 64 a columns = 128 weight columns (gate and up)
#endif

  if (wg == CWG) {
    // Producer. Activation piece q = p + 128 i is slot row q / 8 = p / 8 + 16 i, 16-byte column
    // q % 8; weight piece q = p + 128 i is warp tile q % 8, its piece (q / 8) % 2, k row q / 16.
    const int p = tid - 128 * CWG, r = p >> 3, cc = p & 7;
    const uint dst0 = clq_wg_tile_off(r, cc);
    uint x_off[8];  // 32-bit row offsets: the launcher keeps rows * ldx_bytes below 2^31
    for (int i = 0; i < 8; ++i) {
      const int s = m0 + r + 16 * i;
#if MODE == 0
      const int id = sorted_gl[s];
      x_off[i] = (uint)(id < TK ? id / topk : 0) * (uint)ldx_bytes + 16u * cc;
#else
      x_off[i] = (uint)s * (uint)ldx_bytes + 16u * cc;
#endif
    }
    const int wt = p & 7, pc = (p >> 3) & 1, kr = p >> 4;
#if MODE == 0
    const int col = min(c0 + 8 * wt, N - 8) + pc * N;  // gate, or its up column I further
#else
    const int col = min(n0 + 16 * wt + 8 * pc, N - 8);
#endif
    const __global uchar* wsrc = w_gl + (size_t)e * w_stride + ((size_t)kr * Np + col) * 2;
    const size_t w_row8 = (size_t)16 * Np, w_chunk = (size_t)128 * Np;  // 8 and 64 rows of K, bytes
    const uint wdst = ST_W + (uint)(wt * 2048 + pc * 1024 + kr * 16);
    for (int x = 0; x < chunks; ++x) {
      const int slot = x % STAGES, round = x / STAGES;
      if (round > 0) clq_mbar_wait(bars + 8 * (STAGES + slot), (uint)(round - 1) & 1u);
      const uint sb = smem + slot * STAGE_BYTES;
      for (int i = 0; i < 8 * (KO != 2); ++i) {
        clq_wg_cp16(sb + dst0 + 2048u * i, x_gl + x_off[i] + (size_t)x * 128);
#if MODE == 1
        clq_wg_cp16(sb + TOK * 128 + dst0 + 2048u * i, xlo_gl + x_off[i] + (size_t)x * 128);
#endif
        clq_wg_cp16(sb + wdst + 128u * i, wsrc + w_chunk * x + w_row8 * i);
      }
      clq_mbar_arrive_cp(bars + 8 * slot);
    }
    return;
  }

  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wt = 4 * wg + warp;
  // ldmatrix tile j = lane / 8: piece j % 2 (A rows 0-7 or 8-15), k rows 8 (j / 2) .. + 7.
  const uint a_at = ST_W + (uint)(wt * 2048 + ((lane >> 3) & 1) * 1024 + (((lane >> 4) << 3) + (lane & 7)) * 16);
  float acc[64];
  uint a[32];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) a[i] = 0u;
  // TURN chunks a turn, unrolled so that each A register set is named statically; no wgmma is in
  // flight across the loop's back edge (ptxas would serialize every wgmma of the kernel).
  for (int x = 0; x < chunks; x += TURN) {
    const int n_this = min(TURN, chunks - x);
#pragma unroll
    for (int j = 0; j < TURN; ++j)
      if (j < n_this) clq_moe_chunk(smem, bars, a_at, acc, a, a + 16 * (j & 1), x + j, j == 0);
    clq_wg_wait0_rs32(acc, a);
    clq_mbar_arrive(bars + 8 * (STAGES + (x + n_this - 1) % STAGES));
  }

  // acc[4i + 2h + e]: A row 16 wt + g + 8h, slot m0 + 8i + 2t + e.
#if MODE == 0
  const int c = c0 + 8 * wt + g;
#pragma unroll
  for (int i = 0; i < 16; ++i)
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int s = m0 + 8 * i + 2 * t + e2;
      const float gt = acc[4 * i + e2], up = acc[4 * i + 2 + e2];
      const float v = c < N ? gt / (1.0f + exp(-gt)) * up : 0.0f;
      const ushort hi = clq_moe_to16(v);
      ahi_gl[(size_t)s * lda + c] = hi;
      alo_gl[(size_t)s * lda + c] = clq_moe_to16(v - clq_moe_from16(hi));
    }
#else
#pragma unroll
  for (int i = 0; i < 16; ++i)
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int s = m0 + 8 * i + 2 * t + e2;
      const int id = sorted_gl[s];
      if (id >= TK) continue;
      const float rw = topk_w_gl[id];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = n0 + 16 * wt + g + 8 * h;
        if (n < N) y2_gl[(size_t)id * N + n] = acc[4 * i + 2 * h + e2] * rw;
      }
    }
#endif
}

// x [R][K] 16-bit -> [R][Kp] with zero columns from K: the gate_up GEMM reads whole 64-column
// chunks. One work-item per 8 columns.
__kernel void moe_wg_pad_rows(__global const ushort* restrict src, __global ushort* restrict dst, int R, int K,
                              int Kp) {
  const int w = get_global_id(0), r = get_global_id(1);
  if (w >= Kp / 8 || r >= R) return;
  for (int i = 0; i < 8; ++i) {
    const int k = w * 8 + i;
    dst[(size_t)r * Kp + k] = k < K ? src[(size_t)r * K + k] : (ushort)0;
  }
}
