// W4A16 prefill on Hopper: wgmma.mma_async m64nNk16 with the dequantized int4 weights as the
// register A operand and the 16-bit activations as the shared-memory B operand, on the stage
// hand-over of the sm_90a GEMMs (common/wgmma_gemm.clh: GROUP_M raster, mbarriers, one cp.async
// producer warpgroup and CWG consumers). Chosen by the capability table only where the nv_wgmma
// probe passed; nv_mma_tiled stays the sm80/sm89 path.
//
// Orientation as in nv_mma_tiled: the tensor cores compute y^T = W^T x^T, so the M of wgmma is 64
// output columns (a warp's 16-column tile of the fragment layout qf, whose per-lane uint4 for a
// 64-row chunk is exactly the m16n8k16 A fragment of four k16 steps: the A fragment layout of
// register-A wgmma) and its N is TOK rows of x. A work-group owns 64 * CWG output columns
// (warpgroup wg: columns 64 wg .. 64 wg + 63, tiles 4 wg + warp) x TOK rows of x, one pipeline
// step per 64-row chunk of K. A stage holds, for chunk c:
//   [0, 128 TOK):          x rows [TOK][64 x 16 bits] in common/wgmma.clh's 128-byte swizzle (B)
//   [ST_W, + 2048 CWG):    the 4 CWG tiles' qf words, 512 bytes a tile in lane order
//   [ST_SZ, + 256 CWG):    their scales/zeros of the chunk's group (sz, 64 bytes a tile)
// so the consumers read their weights with one 16-byte .shared load a lane, never from memory.
// Three consumers (or 256 rows of x) need more registers than 65536 / work-group size: the
// producer gives its spare ones to the consumers (setmaxnreg, REGS_TRADE).
//
// Numerics, two builds (SPEC section 2; the tolerance is 1e-3 mean relative):
//   PRESCALE 0 (bf16, or scales fp16 cannot carry): as nv_mma_tiled, (q - z) is exact in f16/bf16
//     and so is every product in the tensor core; the k16 steps of a group's chunks sum into an
//     fp32 block that folds into the result by the group's scale (acc += block * s) once the
//     group ends, so (q - z) * s is never rounded to 16 bits (in bf16 that rounding alone would
//     cost about 1e-3).
//   PRESCALE 1 (fp16 activations, every |s| * 16 a normal fp16: the launcher checks the layer):
//     the A registers are fp16((q - z) * s), one rounding of at most 2^-11 relative per weight
//     (as Marlin's fp16 path), and the wgmma accumulate straight into the result: no fold, no
//     wait per chunk for one. With DEFER 1 a chunk's wgmma run while the next chunk's A
//     registers are built (two A register sets; a stage is released one chunk later), TURN
//     chunks at a time.
// Chunks whose words span groups (act-order padding, groups under 64 rows) go step by step (half
// step where a step spans two groups), each with its own group's scales/zeros from memory.
// Rows of x past M load row M - 1 (never stored); tiles past the layer repeat the last (never stored).
//
// Split-K (dimension 1) cuts the chunks into ranges; each range stores fp32 partials, summed by
// w4a16_splitk_reduce (w4a16/gemv.cl).
#include "common/act_io.clh"
#include "common/nv_mma.clh"

#ifndef CWG
#define CWG 2  // consumer warpgroups: 64 output columns each (3 only with TOK 128, on setmaxnreg)
#endif
#define CLQ_WG_CONSUMERS CWG
#define BN (64 * CWG)
#ifndef TOK
#define TOK 128  // rows of x per tile: 128 (m64n128 wgmma), or 256 (m64n256, PRESCALE only)
#endif
#define BM TOK
#if (TOK == 256 && CWG != 2) || (CWG == 3 && !PRESCALE)
#error "256-row tiles take two consumer warpgroups; three take the PRESCALE build (no block sums)"
#endif
#if TOK == 256
#define STAGE_BYTES 37888  // 37376 rounded up to 1024: each stage's x tile starts on a swizzle period
#define CLQ_MMA_RS clq_wg_mma_rs_n256
#define CLQ_WAIT0_RS clq_wg_wait0_rs32_n256
#define CLQ_WAIT1_RS clq_wg_wait1_rs32_n256
#elif CWG == 3
#define STAGE_BYTES 23552  // 16384 + 12 tiles x (512 + 64), rounded up to 1024
#define CLQ_MMA_RS clq_wg_mma_rs_n128
#define CLQ_WAIT0_RS clq_wg_wait0_rs32
#define CLQ_WAIT1_RS clq_wg_wait1_rs32
#else
#define STAGE_BYTES 21504
#define CLQ_MMA_RS clq_wg_mma_rs_n128
#define CLQ_WAIT0_RS clq_wg_wait0_rs32
#define CLQ_WAIT1_RS clq_wg_wait1_rs32
#endif
#if TOK == 256 && !PRESCALE
#error "TOK 256 holds 128 accumulators: no room for the fold build's block sums"
#endif
#define ACC (TOK / 2)     // accumulators per consumer work-item
#define XLOADS (TOK / 16)  // 16-byte pieces of the x tile per producer work-item
#include "common/wgmma_gemm.clh"

#ifndef PRESCALE
#define PRESCALE 0
#endif
#ifndef DEFER
#define DEFER 1
#endif
#ifndef TURN
#define TURN 2  // chunks per turn of the PRESCALE consumer loop
#endif
#define ST_W (TOK * 128)
#define ST_SZ (ST_W + CWG * 2048)
#define REGS_TRADE (TOK == 256 || CWG == 3)  // setmaxnreg: producer 56, consumers 224 (two) / 152 (three)
#define CLQ_MIXED 0x40000000

CLQ_INLINE uint clq_zbias(uint z) { return CLQ_NIB_BIAS2 | z | (z << 16); }

// The A registers of one k16 step from the lane's word of it: which 0 = both 8-row halves,
// 1 = rows 0-7 only, 2 = rows 8-15 only (as nv_mma_tiled's step).
CLQ_INLINE void clq_w4_step_a(uint* a, uint w, uint zm0, uint zm1, int which) {
  a[0] = which == 2 ? 0u : clq_nib_a(w, 0, zm0);
  a[1] = which == 2 ? 0u : clq_nib_a(w, 1, zm1);
  a[2] = which == 1 ? 0u : clq_nib_a(w, 2, zm0);
  a[3] = which == 1 ? 0u : clq_nib_a(w, 3, zm1);
}

// acc += blk * s: rows g (s0, the low half of sz.x) and g + 8 (s1) of the warp's tile.
CLQ_INLINE void clq_w4_fold(float* acc, const float* blk, uint szx) {
  const float s0 = clq_fp16_to_f32((ushort)(szx & 0xFFFFu)), s1 = clq_fp16_to_f32((ushort)(szx >> 16));
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    acc[4 * i + 0] = fma(blk[4 * i + 0], s0, acc[4 * i + 0]);
    acc[4 * i + 1] = fma(blk[4 * i + 1], s0, acc[4 * i + 1]);
    acc[4 * i + 2] = fma(blk[4 * i + 2], s1, acc[4 * i + 2]);
    acc[4 * i + 3] = fma(blk[4 * i + 3], s1, acc[4 * i + 3]);
  }
}

#if PRESCALE
CLQ_INLINE uint clq_mul2(uint a, uint b) {
  uint d;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
// As clq_w4_step_a, times the scales of rows g (s00: both halves) and g + 8 (s11).
CLQ_INLINE void clq_w4_step_a_scaled(uint* a, uint w, uint2 sz, int which) {
  const uint zm0 = clq_zbias(sz.y & 0xFFFFu), zm1 = clq_zbias(sz.y >> 16);
  const uint s00 = (sz.x & 0xFFFFu) * 0x10001u, s11 = (sz.x >> 16) * 0x10001u;
  a[0] = which == 2 ? 0u : clq_mul2(clq_nib_a(w, 0, zm0), s00);
  a[1] = which == 2 ? 0u : clq_mul2(clq_nib_a(w, 1, zm1), s11);
  a[2] = which == 1 ? 0u : clq_mul2(clq_nib_a(w, 2, zm0), s00);
  a[3] = which == 1 ? 0u : clq_mul2(clq_nib_a(w, 3, zm1), s11);
}

typedef struct {
  uint smem, bars, w_at, sz_at;
  int c_begin, nchunk, tiles;
  size_t sz_mine;
  const __global uint2* sz2;
  const __global int* wgroup_gl;
  const __global int* desc_gl;
} clq_w4_io;

// Chunk x of a PRESCALE consumer into acc, with A register set `as` (a + 0 or a + 16; a names both
// for the waits). Releases the stage of chunk x once its wgmma are done (DEFER 0), or of chunk
// x - 1 unless x is the first of its turn (DEFER 1: the turn's end releases its last chunk).
CLQ_INLINE void clq_w4_pre_chunk(const clq_w4_io* io, float* acc, uint* a, uint* as, int x, bool first, int* d_next) {
  const int slot = x % STAGES;
  const uint sb = io->smem + slot * STAGE_BYTES;
  const uint prev_empty = io->bars + 8 * (STAGES + (x + STAGES - 1) % STAGES);
  const int d = *d_next;
  if (x + 1 < io->nchunk) *d_next = io->desc_gl[io->c_begin + x + 1];
  clq_mbar_wait(io->bars + 8 * slot, (uint)(x / STAGES) & 1u);
  const uint4 q4 = clq_wg_ld16(sb + io->w_at);
  clq_wg_proxy_fence();
  if (!(d & CLQ_MIXED)) {
    const uint2 sz = clq_wg_ld8(sb + io->sz_at);
    clq_w4_step_a_scaled(as + 0, q4.x, sz, 0);
    clq_w4_step_a_scaled(as + 4, q4.y, sz, 0);
    clq_w4_step_a_scaled(as + 8, q4.z, sz, 0);
    clq_w4_step_a_scaled(as + 12, q4.w, sz, 0);
    clq_wg_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) CLQ_MMA_RS(acc, as + 4 * s, clq_wg_desc(sb + clq_wg_step_off(0, s, 32)), 1);
    clq_wg_commit();
#if DEFER
    CLQ_WAIT1_RS(acc, a);
    if (!first) clq_mbar_arrive(prev_empty);
#else
    CLQ_WAIT0_RS(acc, a);
    clq_mbar_arrive(io->bars + 8 * (STAGES + slot));
#endif
  } else {
#if DEFER
    CLQ_WAIT0_RS(acc, a);
    if (!first) clq_mbar_arrive(prev_empty);
#endif
    const int c = io->c_begin + x;
#pragma unroll 1
    for (int s = 0; s < 4; ++s) {
      const uint w = s == 0 ? q4.x : s == 1 ? q4.y : s == 2 ? q4.z : q4.w;
      const int ga = io->wgroup_gl[c * 8 + 2 * s], gb = io->wgroup_gl[c * 8 + 2 * s + 1];
      const ulong db = clq_wg_desc(sb + clq_wg_step_off(0, s, 32));
#pragma unroll 1
      for (int h = 0; h < (ga == gb ? 1 : 2); ++h) {
        const uint2 sz = io->sz2[(size_t)(h ? gb : ga) * io->tiles * 8 + io->sz_mine];
        clq_w4_step_a_scaled(as, w, sz, ga == gb ? 0 : 1 + h);
        clq_wg_fence();
        CLQ_MMA_RS(acc, as, db, 1);
        clq_wg_commit();
        CLQ_WAIT0_RS(acc, a);
      }
    }
#if !DEFER
    clq_mbar_arrive(io->bars + 8 * (STAGES + slot));
#endif
  }
}
#endif

__kernel __attribute__((reqd_work_group_size(128 * (CWG + 1), 1, 1)))
void w4a16_gemm_nv_wgmma(__global const uint4* restrict qf_gl,    // [tiles][chunks][32]
                         __global const uint4* restrict sz_gl,    // [G][tiles][8] uint2, as uint4
                         __global const int* restrict wgroup_gl,  // [chunks * 8] group of each word
                         __global const int* restrict desc_gl,    // [chunks] chunk descriptors
                         __global const uchar* restrict x_gl,     // [M][ldx] 16-bit, packed order
                         __global float* restrict part_gl,        // [splits][M][N] when split
                         __global clq_out_t* restrict y_gl,       // [M][N] when not split
                         int M, int N, int tiles, int chunks, int ldx_bytes, int chunks_per_split) {
  const int tid = get_local_id(0);
  const int wg = tid >> 7;
  const clq_wg_work w = clq_wg_begin(chunks, chunks_per_split);  // m0: first row of x; n0: first output column
  const int m0 = w.m0, n0 = w.n0, split = w.split, splits = get_num_groups(1), c_begin = w.j_begin, nchunk = w.nsteps;
  const int tile_b = n0 >> 4;
  const uint smem = w.smem, bars = w.bars;

  if (wg == CWG) {
#if REGS_TRADE
    clq_wg_regs_dec();  // the consumers' accumulators need the producer's spare registers
#endif
    // Producer: piece q = p + 128 i of the x tile is row q / 8 = p / 8 + 16 i, 16-byte column
    // q % 8 (eight neighbours fill one row); weight pieces p + 128 j are tile q / 32, lane q % 32.
    const int p = tid - 128 * CWG, r = p >> 3, cc = p & 7;
    const uint dst0 = clq_wg_tile_off(r, cc);
    // Row offsets are recomputed per stage rather than held: the producer runs on few registers.
    const __global uchar* x_base = x_gl + (size_t)c_begin * 128 + 16 * cc;
    const __global uint4* wsrc[CWG];
    for (int j = 0; j < CWG; ++j)
      wsrc[j] = qf_gl + ((size_t)min(tile_b + 4 * j + (p >> 5), tiles - 1) * chunks + c_begin) * 32 + (p & 31);
    const size_t sz_tile = (size_t)min(tile_b + (p >> 2), tiles - 1) * 4 + (p & 3);
    int d_next = nchunk > 0 ? desc_gl[c_begin] : 0;  // one chunk ahead: not a load on the hand-over path
    for (int x = 0; x < nchunk; ++x) {
      const int slot = x % STAGES, round = x / STAGES;
      const int d = d_next;
      if (x + 1 < nchunk) d_next = desc_gl[c_begin + x + 1];
      if (round > 0) clq_mbar_wait(bars + 8 * (STAGES + slot), (uint)(round - 1) & 1u);
      const uint sb = smem + slot * STAGE_BYTES;
      // 32-bit row offsets: the launcher keeps M * ldx_bytes below 2^31.
      for (int i = 0; i < XLOADS; ++i)
        clq_wg_cp16(sb + dst0 + 2048u * i, x_base + (uint)min(m0 + r + 16 * i, M - 1) * (uint)ldx_bytes + (size_t)x * 128);
      for (int j = 0; j < CWG; ++j) clq_wg_cp16(sb + ST_W + 16u * (p + 128 * j), wsrc[j] + (size_t)x * 32);
      if (p < 16 * CWG) clq_wg_cp16(sb + ST_SZ + 16u * p, sz_gl + (size_t)(d & (CLQ_MIXED - 1)) * tiles * 4 + sz_tile);
      clq_mbar_arrive_cp(bars + 8 * slot);
    }
    return;
  }

#if REGS_TRADE && CWG == 3
  CLQ_WG_REGS_INC(152);
#elif REGS_TRADE
  CLQ_WG_REGS_INC(224);
#endif
  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wt = 4 * wg + warp;  // the warp's tile in the work-group's 4 * CWG
  const uint w_at = ST_W + (uint)(wt * 512 + lane * 16), sz_at = ST_SZ + (uint)(wt * 64 + g * 8);
  const __global uint2* sz2 = (const __global uint2*)sz_gl;
  const size_t sz_mine = (size_t)min(tile_b + wt, tiles - 1) * 8 + g;  // this lane's entry of a group

  int d_next = nchunk > 0 ? desc_gl[c_begin] : 0;
#if PRESCALE
  float acc[ACC];
  uint a[32];
#pragma unroll
  for (int i = 0; i < ACC; ++i) acc[i] = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) a[i] = 0u;
  clq_w4_io io = {smem, bars, w_at, sz_at, c_begin, nchunk, tiles, sz_mine, sz2, wgroup_gl, desc_gl};
  // TURN chunks a turn, unrolled so that each A register set is named statically. No wgmma may be
  // in flight across the loop's back edge (ptxas would serialize every wgmma of the kernel), so a
  // turn ends with a wait for all: one bubble per TURN chunks, which the other consumer fills.
  for (int x = 0; x < nchunk; x += TURN) {
    const int n_this = min(TURN, nchunk - x);
#pragma unroll
    for (int j = 0; j < TURN; ++j)
      if (j < n_this) clq_w4_pre_chunk(&io, acc, a, a + 16 * (j & 1), x + j, j == 0, &d_next);
#if DEFER
    clq_wg_wait0_rs32(acc, a);
    clq_mbar_arrive(bars + 8 * (STAGES + (x + n_this - 1) % STAGES));
#endif
  }
#else
  float acc[64], blk[64];
  uint a[16];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = blk[i] = 0.0f;
  // blk sums the chunks of one group (consecutive chunks of one descriptor) before one fold by its
  // scales: one fold per group rather than per chunk.
  bool pending = false;
  int pending_d = 0;
  uint pending_s = 0;
  for (int x = 0; x < nchunk; ++x) {
    const int slot = x % STAGES;
    const uint sb = smem + slot * STAGE_BYTES;
    const int d = d_next;
    if (x + 1 < nchunk) d_next = desc_gl[c_begin + x + 1];
    clq_mbar_wait(bars + 8 * slot, (uint)(x / STAGES) & 1u);
    const uint4 q4 = clq_wg_ld16(sb + w_at);
    // The producer's cp.async writes are generic-proxy writes; wgmma reads through the async proxy.
    clq_wg_proxy_fence();
    if (!(d & CLQ_MIXED)) {
      const uint2 sz = clq_wg_ld8(sb + sz_at);
      const uint zm0 = clq_zbias(sz.y & 0xFFFFu), zm1 = clq_zbias(sz.y >> 16);
      // A chunk of the pending sum's group adds to it; another group folds the pending sum first.
      const bool cont = pending && d == pending_d;
      if (pending && !cont) clq_w4_fold(acc, blk, pending_s);
      clq_w4_step_a(a + 0, q4.x, zm0, zm1, 0);
      clq_w4_step_a(a + 4, q4.y, zm0, zm1, 0);
      clq_w4_step_a(a + 8, q4.z, zm0, zm1, 0);
      clq_w4_step_a(a + 12, q4.w, zm0, zm1, 0);
      clq_wg_fence();
#pragma unroll
      for (int s = 0; s < 4; ++s)
        clq_wg_mma_rs_n128(blk, a + 4 * s, clq_wg_desc(sb + clq_wg_step_off(0, s, 32)), s > 0 || cont);
      clq_wg_commit();
      clq_wg_wait0_rs(blk, a);
      clq_mbar_arrive(bars + 8 * (STAGES + slot));
      pending = true;
      pending_d = d;
      pending_s = sz.x;
    } else {
      if (pending) clq_w4_fold(acc, blk, pending_s);
      pending = false;
      // Words of several groups: one wgmma per (half) step, each folded with its own group.
      const int c = c_begin + x;
#pragma unroll 1
      for (int s = 0; s < 4; ++s) {
        const uint w = s == 0 ? q4.x : s == 1 ? q4.y : s == 2 ? q4.z : q4.w;
        const int ga = wgroup_gl[c * 8 + 2 * s], gb = wgroup_gl[c * 8 + 2 * s + 1];
        const ulong db = clq_wg_desc(sb + clq_wg_step_off(0, s, 32));
#pragma unroll 1
        for (int h = 0; h < (ga == gb ? 1 : 2); ++h) {
          const uint2 sz = sz2[(size_t)(h ? gb : ga) * tiles * 8 + sz_mine];
          clq_w4_step_a(a, w, clq_zbias(sz.y & 0xFFFFu), clq_zbias(sz.y >> 16), ga == gb ? 0 : 1 + h);
          clq_wg_fence();
          clq_wg_mma_rs_n128(blk, a, db, 0);
          clq_wg_commit();
          clq_wg_wait0_rs(blk, a);
          clq_w4_fold(acc, blk, sz.x);
        }
      }
      clq_mbar_arrive(bars + 8 * (STAGES + slot));
    }
  }
  if (pending) clq_w4_fold(acc, blk, pending_s);
#endif

  // acc[4i + 2h + e]: output column n0 + 16 wt + g + 8h, row of x m0 + 8i + 2t + e.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int n = n0 + 16 * wt + g + 8 * h;
    if (n >= N) continue;
#pragma unroll
    for (int i = 0; i < TOK / 8; ++i)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int m = m0 + 8 * i + 2 * t + e;
        if (m >= M) continue;
        const float v = acc[4 * i + 2 * h + e];
        if (splits == 1) clq_store_out(y_gl, (size_t)m * N + n, v);
        else part_gl[((size_t)split * M + m) * N + n] = v;
      }
  }
}
