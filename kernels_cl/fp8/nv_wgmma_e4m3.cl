// Block-scaled W8A8 FP8 prefill on Hopper: wgmma.mma_async m64n128k32 e4m3 from shared-memory
// descriptors, STAGES x 32 KiB of stages in the module-scope array the PTX patch declares (up to
// 227 KiB, against 48 KiB of OpenCL __local), filled by cp.async. Chosen by the capability table
// only where the nv_wgmma probe passed (common/wgmma.clh).
//
// A work-group is two warpgroups (256 work-items) and one 128 x 128 output tile; warpgroup wg
// owns rows 64 wg .. 64 wg + 63. One pipeline step is one 128-wide K block, the FP8 scale block:
//   A stage: activation codes [128 rows][128 bytes] (fp8/quant.cl, rows padded to Kp)
//   B stage: weight codes     [128 columns][128 bytes] (fp8/gemv.cl fp8_rows_from_blocks)
// both in the stage layout of common/wgmma.clh (128-byte swizzle). Two-level accumulation (SPEC
// section 4): the four k32 steps of a block start a fresh fp32 block sum in the tensor core, then
//   acc += block * sa[m][j] * sw[n/128][j]
// in the registers, the same order of operations as the mma.sync kernel (fp8/nv_mma_e4m3.cl).
// With DBUF (default) there are two block sums: block j + 1 is multiplied while block j is
// folded, so the tensor cores do not wait for the fold, the barrier and the next loads.
// Rows past M load row M - 1 (their results are never stored); weight rows past N are zeros.
#include "common/act_io.clh"
#include "common/wgmma.clh"

#ifndef STAGES
#define STAGES 5  // 5 x 32 KiB: one work-group per SM
#endif
#ifndef DBUF
#define DBUF 1
#endif
#ifndef GROUP_M
#define GROUP_M 8  // row tiles that walk the column tiles together, so their weights are read from L2
#endif
#ifndef KNOCKOUT
#define KNOCKOUT 0  // measurement only: 1 = no wgmma issued (loads alone), 2 = no loads after the prologue
#endif
#define BM 128
#define BN 128
#define A_BYTES (BM * 128)
#define STAGE_BYTES (A_BYTES + BN * 128)
#define LOADS 4  // 16-byte pieces of A (and of B) per work-item per stage: 128 rows x 8 / 256
// Blocks loaded ahead. With two block sums the wgmma of the previous block may still read its
// slot while the next loads are issued, so one slot fewer is free.
#if DBUF
#define DIST (STAGES - 2)
#else
#define DIST (STAGES - 1)
#endif
#if DIST < 1 || DIST > 5
#error "STAGES leaves no block to load ahead (DBUF needs 3 to 7, else 2 to 6)"
#endif

// One commit group per step, empty ones included: DIST - 1 pending means the oldest landed.
CLQ_INLINE void clq_cp_wait_step(void) {
#if DIST == 1
  asm volatile("cp.async.wait_group 0;" ::: "memory");
#elif DIST == 2
  asm volatile("cp.async.wait_group 1;" ::: "memory");
#elif DIST == 3
  asm volatile("cp.async.wait_group 2;" ::: "memory");
#elif DIST == 4
  asm volatile("cp.async.wait_group 3;" ::: "memory");
#else
  asm volatile("cp.async.wait_group 4;" ::: "memory");
#endif
}

__kernel __attribute__((reqd_work_group_size(256, 1, 1)))
void fp8_block_gemm_wgmma(__global const uchar* restrict wrows_gl,  // [Npw][Kp] weight codes, Npw = 128 k
                          __global const float* restrict sw_gl,     // [Nb][Kb]
                          __global const uchar* restrict codes_gl,  // [M][Kp] activation codes
                          __global const float* restrict sa_gl,     // [M][Kb]
                          __global float* restrict part_gl,         // [splits][M][N] when split
                          __global clq_out_t* restrict y_gl,        // [M][N] when not split
                          int M, int N, int Kp, int blocks_per_split, int direct) {
  const int tid = get_local_id(0);
  const int wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  // Work-groups start in launch order (x fastest, then z); GROUP_M row tiles at a time share each
  // column tile, so a column's weights are fetched from memory about once per group, not per row.
  const int n_tiles = get_num_groups(0), m_tiles = get_num_groups(2);
  const int pid = get_group_id(0) + get_group_id(2) * n_tiles;
  const int first_m = (pid / (GROUP_M * n_tiles)) * GROUP_M;
  const int gm = min(m_tiles - first_m, GROUP_M);
  const int m_tile = first_m + (pid % (GROUP_M * n_tiles)) % gm;
  const int n_tile = (pid % (GROUP_M * n_tiles)) / gm;
  const int n0 = n_tile * BN, m0 = m_tile * BM;
  const int split = get_group_id(1);
  const int Kb = Kp / 128;
  const int j_begin = split * blocks_per_split;
  const int nblk = min(Kb, j_begin + blocks_per_split) - j_begin;
  const uint smem = clq_wg_smem_base();

  // Piece q = tid + 256 i of a stage is row q / 8 = r + 32 i, 16-byte column c = q % 8: eight
  // neighbouring work-items read one row's 128 bytes and fill one 128-byte row of .shared.
  // A rows past M are clamped to M - 1.
  const int r = tid >> 3, c = tid & 7;
  const uint dst0 = clq_wg_tile_off(r, c);  // + 4096 i: rows r + 32 i keep r % 8
  // 32-bit row offsets (the op keeps M * Kp below 2^31): registers are the scarce resource here.
  const __global uchar* a_base = codes_gl + (size_t)j_begin * 128 + 16 * c;
  uint a_off[LOADS];
  for (int i = 0; i < LOADS; ++i) a_off[i] = (uint)min(m0 + r + 32 * i, M - 1) * (uint)Kp;
  const __global uchar* b_src = wrows_gl + (size_t)(n0 + r) * Kp + (size_t)j_begin * 128 + 16 * c;
  const size_t b_row32 = (size_t)32 * Kp;

#define CLQ_LOAD(step)                                                                     \
  do {                                                                                     \
    const uint sb_ = smem + ((step) % STAGES) * STAGE_BYTES;                               \
    for (int i = 0; i < LOADS; ++i) {                                                      \
      clq_wg_cp16(sb_ + dst0 + 4096u * i, a_base + a_off[i] + (size_t)(step) * 128);      \
      clq_wg_cp16(sb_ + A_BYTES + dst0 + 4096u * i, b_src + b_row32 * i + (size_t)(step) * 128); \
    }                                                                                      \
  } while (0)

  for (int s = 0; s < DIST; ++s) {
    if (s < nblk) CLQ_LOAD(s);
    clq_wg_cp_commit();
  }

  const int r_lo = min(m0 + 64 * wg + 16 * warp + g, M - 1), r_hi = min(m0 + 64 * wg + 16 * warp + g + 8, M - 1);
  const __global float* sw_rd = sw_gl + (size_t)(n0 / 128) * Kb + j_begin;
  const __global float* sa_rd = sa_gl + j_begin;
  const uint lo_off = (uint)r_lo * (uint)Kb, hi_off = (uint)r_hi * (uint)Kb;

  // Step x: its pieces landed (this work-item's, then everyone's after the barrier, which also
  // means every warpgroup is done reading the slot the next load overwrites), the load of step
  // x + DIST issued, then the four k32 wgmma of block x into BLK, committed, not waited for.
#define CLQ_ISSUE(x, BLK, SLO, SHI, SWJ)                                                  \
  do {                                                                                     \
    clq_cp_wait_step();                                                                    \
    clq_wg_proxy_fence();                                                                  \
    barrier(CLK_LOCAL_MEM_FENCE);                                                          \
    if ((x) + DIST < (KNOCKOUT == 2 ? min(nblk, STAGES) : nblk)) CLQ_LOAD((x) + DIST);     \
    clq_wg_cp_commit();                                                                    \
    const uint sb_ = smem + ((x) % STAGES) * STAGE_BYTES;                                  \
    clq_wg_fence();                                                                        \
    _Pragma("unroll") for (int s = 0; s < 4; ++s) {                                        \
      const ulong da = clq_wg_desc(sb_ + clq_wg_step_off(64 * wg, s, 32));                 \
      const ulong db = clq_wg_desc(sb_ + A_BYTES + clq_wg_step_off(0, s, 32));             \
      if (KNOCKOUT != 1 || M < 0) clq_wg_mma_e4m3_n128(BLK, da, db, s > 0);                \
    }                                                                                      \
    clq_wg_commit();                                                                       \
    SWJ = sw_rd[x];                                                                        \
    SLO = sa_rd[lo_off + (x)];                                                             \
    SHI = sa_rd[hi_off + (x)];                                                             \
  } while (0)

#define CLQ_FOLD(BLK, SLO, SHI, SWJ)                      \
  do {                                                    \
    _Pragma("unroll") for (int i = 0; i < 16; ++i) {      \
      acc[4 * i + 0] += BLK[4 * i + 0] * SLO * SWJ;       \
      acc[4 * i + 1] += BLK[4 * i + 1] * SLO * SWJ;       \
      acc[4 * i + 2] += BLK[4 * i + 2] * SHI * SWJ;       \
      acc[4 * i + 3] += BLK[4 * i + 3] * SHI * SWJ;       \
    }                                                     \
  } while (0)

  float acc[64], blk0[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = blk0[i] = 0.0f;
  float lo0 = 0.0f, hi0 = 0.0f, sw0 = 0.0f;
#if DBUF
  float blk1[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) blk1[i] = 0.0f;
  float lo1 = 0.0f, hi1 = 0.0f, sw1 = 0.0f;
  // Every path retires each wgmma it issued with no condition in between (ptxas serializes every
  // wgmma of the kernel when it cannot prove which accumulators are in flight): the host gives
  // every split at least one block, and the tail is peeled.
  CLQ_ISSUE(0, blk0, lo0, hi0, sw0);
  int it = 0;
  for (; it + 2 < nblk; it += 2) {
    CLQ_ISSUE(it + 1, blk1, lo1, hi1, sw1);
    clq_wg_wait1_n128(blk0);
    CLQ_FOLD(blk0, lo0, hi0, sw0);
    CLQ_ISSUE(it + 2, blk0, lo0, hi0, sw0);
    clq_wg_wait1_n128(blk1);
    CLQ_FOLD(blk1, lo1, hi1, sw1);
  }
  if (it + 1 < nblk) {
    CLQ_ISSUE(it + 1, blk1, lo1, hi1, sw1);
    clq_wg_wait1_n128(blk0);
    CLQ_FOLD(blk0, lo0, hi0, sw0);
    clq_wg_wait0_n128(blk1);
    CLQ_FOLD(blk1, lo1, hi1, sw1);
  } else {
    clq_wg_wait0_n128(blk0);
    CLQ_FOLD(blk0, lo0, hi0, sw0);
  }
#else
  for (int it = 0; it < nblk; ++it) {
    CLQ_ISSUE(it, blk0, lo0, hi0, sw0);
    clq_wg_wait0_n128(blk0);
    CLQ_FOLD(blk0, lo0, hi0, sw0);
  }
#endif
#undef CLQ_ISSUE
#undef CLQ_FOLD
#undef CLQ_LOAD

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
