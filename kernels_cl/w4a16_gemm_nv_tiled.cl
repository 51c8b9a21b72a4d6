// W4A16 for prefill-sized M on NVIDIA tensor cores (sm80+), OpenCL C with inline PTX: local-
// memory tiles filled by cp.async several stages ahead, activations read by ldmatrix, int4 weights
// dequantized in registers. Chosen by the capability table only where the mma known-answer probe
// passed; nv_mma_skinny covers small M with the same weight layout.
//
// Operands as in nv_mma_skinny (w4a16_gemm_nv_skinny.cl has the layout picture): the tensor
// cores compute y^T = W^T x^T, the weights are the m16n8k16 A operand straight from the
// fragment-matched layout qf (one uint4 per lane per 16 columns x 64 rows), the activations the
// B operand. For x rows the B fragment of 8 rows x 16 k is exactly two 8x8 ldmatrix matrices
// (b0 = rows' k 0-7, b1 = k 8-15), so one ldmatrix.x4 gives a row block's B for two k16 steps.
//
// Work-group: WN x WM warps; warp (wn, wm) owns TN 16-column tiles and MBW 8-row blocks, so the
// work-group covers 16 * TN * WN columns (BT tiles) and BM = 8 * MBW * WM rows. Per 64-row
// chunk of K it stages in local memory (STAGES deep, cp.async, one commit group per chunk):
//   wl: the BT tiles' weights, 512 contiguous bytes each (qf order, read back as one uint4 a lane)
//   xl: BM rows x 64 k of 16-bit activations, 128 bytes a row, its eight 16-byte pieces
//       swizzled (piece p of row r at p ^ (r & 7)) so that the 8 row addresses of each ldmatrix
//       matrix hit 8 different bank groups, and cp.async writes stay whole 16-byte pieces
//   szl: the scales/zeros of the chunk's group for the BT tiles (from sz, 64 bytes a tile)
// Rows past M and tiles past the layer are zero-filled by cp.async (source size 0).
//
// Numerics as in nv_mma_skinny: (q - z) is exact in fp16/bf16, every product in the tensor core
// is exact, each group's steps accumulate in fp32 `part` and fold into `acc += part * s` when the
// group changes. Chunks whose 8 words span groups (act-order padding, groups < 64 rows) take a
// per-step path that reads the groups and scales from global memory.
//
// Split-K (dimension 1) cuts the chunks into ranges when the tiles alone do not fill the device;
// each range stores fp32 partials, w4a16_splitk_reduce (w4a16_gemv.cl) sums them in split order.
#include "common/act_io.clh"
#include "common/nv_mma.clh"

#ifndef TN
#define TN 4  // 16-column tiles per warp
#endif
#ifndef WN
#define WN 2  // warps along N
#endif
#ifndef MBW
#define MBW 4  // 8-row blocks per warp
#endif
#ifndef WM
#define WM 4  // warps along M
#endif
#ifndef GM
#define GM 8  // row blocks per band of the raster order (see the kernel)
#endif
#ifndef STAGES
#define STAGES 2  // chunks in local memory: STAGES - 1 in flight while one is used
#endif
#define WARPS (WN * WM)
#define THREADS (32 * WARPS)
#define BT (TN * WN)       // 16-column tiles per work-group
#define BM (8 * MBW * WM)  // rows of x per work-group
#define XP (BM * 8)        // 16-byte pieces of one stage's activations
#define WP (BT * 32)       // ... of its weights
#define SP (BT * 4)        // ... of its scales/zeros
#define CLQ_MIXED 0x40000000

#define CLQ_INLINE inline __attribute__((always_inline))

// 16 bytes global -> local without a register round trip; `full` 0 writes zeros (source size 0).
// A __local pointer converted to an integer is its .shared address (OpenCL C has no generic
// address space here), which is what cp.async and ldmatrix take.
CLQ_INLINE void clq_cp16(__local const void* dst, __global const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"((uint)(size_t)dst), "l"(src),
               "r"(full ? 16 : 0)
               : "memory");
}
CLQ_INLINE void clq_cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most STAGES - 2 of this work-item's groups are still in flight.
CLQ_INLINE void clq_cp_wait(void) {
#if STAGES == 2
  asm volatile("cp.async.wait_group 0;" ::: "memory");
#elif STAGES == 3
  asm volatile("cp.async.wait_group 1;" ::: "memory");
#elif STAGES == 4
  asm volatile("cp.async.wait_group 2;" ::: "memory");
#else
#error "STAGES must be 2, 3 or 4"
#endif
}
CLQ_INLINE void clq_ldsm_x4(uint* r, uint addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

typedef struct {
  float acc[TN][MBW][4];   // folded result
  float part[TN][MBW][4];  // current group, unscaled
  float s[TN][2];          // scales of columns g, g + 8 for the current group
  uint zm[TN][2];          // bias + z of columns g, g + 8, in both halves
  int cur;                 // current group, -1 before the first
} clq_tiled_state;

CLQ_INLINE void clq_tiled_fold(clq_tiled_state* st) {
#pragma unroll
  for (int nt = 0; nt < TN; ++nt)
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        st->acc[nt][mb][r] = fma(st->part[nt][mb][r], st->s[nt][r >> 1], st->acc[nt][mb][r]);
        st->part[nt][mb][r] = 0.0f;
      }
}

// Folds the finished group and makes `grp`, whose scales/zeros per tile are sz, current.
CLQ_INLINE void clq_tiled_switch(clq_tiled_state* st, int grp, const uint2* sz) {
  if (st->cur >= 0) clq_tiled_fold(st);
#pragma unroll
  for (int nt = 0; nt < TN; ++nt) {
    st->s[nt][0] = clq_fp16_to_f32((ushort)(sz[nt].x & 0xFFFFu));
    st->s[nt][1] = clq_fp16_to_f32((ushort)(sz[nt].x >> 16));
    const uint z0 = sz[nt].y & 0xFFFFu, z1 = sz[nt].y >> 16;
    st->zm[nt][0] = CLQ_NIB_BIAS2 | z0 | (z0 << 16);
    st->zm[nt][1] = CLQ_NIB_BIAS2 | z1 | (z1 << 16);
  }
  st->cur = grp;
}

// One 16-row step into part: `which` 0 = both words, 1 = only the first (rows 0-7), 2 = only the
// second. b0/b1: the B registers per row block.
CLQ_INLINE void clq_tiled_step(clq_tiled_state* st, const uint* q, const uint* b0, const uint* b1, int which) {
#pragma unroll
  for (int nt = 0; nt < TN; ++nt) {
    const uint w = q[nt];
    const uint a0 = which == 2 ? 0u : clq_sub2((w & 0x000F000Fu) | CLQ_NIB_BIAS2, st->zm[nt][0]);
    const uint a1 = which == 2 ? 0u : clq_sub2(((w >> 4) & 0x000F000Fu) | CLQ_NIB_BIAS2, st->zm[nt][1]);
    const uint a2 = which == 1 ? 0u : clq_sub2(((w >> 8) & 0x000F000Fu) | CLQ_NIB_BIAS2, st->zm[nt][0]);
    const uint a3 = which == 1 ? 0u : clq_sub2(((w >> 12) & 0x000F000Fu) | CLQ_NIB_BIAS2, st->zm[nt][1]);
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb) clq_mma16816(st->part[nt][mb], a0, a1, a2, a3, b0[mb], b1[mb]);
  }
}

typedef struct {
  __global const uint2* sz_gl;  // [G][tiles][8]
  __global const int* wgroup_gl;
  int sz_at[TN];  // this lane's entry of each of the warp's tiles within a group's row of sz
  int tiles;
} clq_tiled_src;

CLQ_INLINE void clq_tiled_switch_global(clq_tiled_state* st, const clq_tiled_src* src, int grp) {
  uint2 sz[TN];
#pragma unroll
  for (int nt = 0; nt < TN; ++nt) sz[nt] = src->sz_gl[(size_t)grp * src->tiles * 8 + src->sz_at[nt]];
  clq_tiled_switch(st, grp, sz);
}

typedef struct {
  __global const uint4* qf_gl;
  __global const uint4* sz_gl;
  __global const int* desc_gl;
  __global const ushort* x_gl;
  int M, ldx, m0, tile0, tiles, chunks, c_end, tid;
} clq_tiled_io;

// Stages chunk c: every work-item issues its share of the 16-byte pieces, then one commit (an
// empty group past the end keeps the wait count uniform). *d_pf holds chunk c's descriptor,
// loaded one issue earlier, and is refilled with the next one's.
CLQ_INLINE void clq_tiled_issue(const clq_tiled_io* io, int c, __local uint4* xl, __local uint4* wl,
                                __local uint4* szl, __local int* dl, int* d_pf) {
  if (c < io->c_end) {
    const int d = *d_pf;
    *d_pf = c + 1 < io->c_end ? io->desc_gl[c + 1] : 0;
    const int grp = d & (CLQ_MIXED - 1);
    const int tid = io->tid;
#pragma unroll
    for (int j = 0; j < (XP + THREADS - 1) / THREADS; ++j) {
      const int i = tid + j * THREADS;
      if (XP % THREADS == 0 || i < XP) {
        const int r = i >> 3, p = i & 7, m = io->m0 + r;
        clq_cp16(&xl[r * 8 + (p ^ (r & 7))], io->x_gl + (size_t)min(m, io->M - 1) * io->ldx + c * 64 + p * 8,
                 m < io->M);
      }
    }
#pragma unroll
    for (int j = 0; j < (WP + THREADS - 1) / THREADS; ++j) {
      const int i = tid + j * THREADS;
      if (WP % THREADS == 0 || i < WP) {
        const int tile = io->tile0 + (i >> 5);
        clq_cp16(&wl[i], io->qf_gl + ((size_t)min(tile, io->tiles - 1) * io->chunks + c) * 32 + (i & 31),
                 tile < io->tiles);
      }
    }
    if (tid < SP) {
      const int tile = io->tile0 + (tid >> 2);
      clq_cp16(&szl[tid], io->sz_gl + ((size_t)grp * io->tiles + min(tile, io->tiles - 1)) * 4 + (tid & 3),
               tile < io->tiles);
    }
    if (tid == 0) *dl = d;
  }
  clq_cp_commit();
}

__kernel __attribute__((reqd_work_group_size(THREADS, 1, 1)))
void w4a16_gemm_nv_tiled(__global const uint4* restrict qf_gl,    // [tiles][chunks][32]
                         __global const uint4* restrict sz_gl,    // [G][tiles][8] uint2, as uint4
                         __global const int* restrict wgroup_gl,  // [chunks * 8] group of each word
                         __global const int* restrict desc_gl,    // [chunks] chunk descriptors
                         __global const ushort* restrict x_gl,    // [M][ldx] 16-bit, packed order
                         __global float* restrict part_gl,        // [splits][M][N] when split
                         __global clq_out_t* restrict y_gl,       // [M][N]
                         int M, int N, int tiles, int chunks, int ldx, int chunks_per_split) {
  __local uint4 wl[STAGES][WP];
  __local uint4 xl[STAGES][XP];
  __local uint4 szl[STAGES][SP];
  __local int dl[STAGES];
  const int tid = get_local_id(0), lane = tid & 31, warp = tid >> 5;
  const int wn = warp % WN, wm = warp / WN;
  const int g = lane >> 2;
  // Raster order: the launch runs dimension 0 fastest, which would sweep every column tile (all
  // the weights) for one row block at a time, over again for each row block: far more than L2
  // holds at prefill sizes. Renumbered, consecutive work-groups walk GM row blocks first, then the
  // next column tile, so a wave of resident work-groups shares a few MB of weights and rows.
  const int nb = get_num_groups(0), mbs = get_num_groups(2);
  const int id = get_group_id(2) * nb + get_group_id(0);
  const int band = id / (GM * nb), in_band = id - band * GM * nb;
  const int band_h = min(GM, mbs - band * GM);
  const int tile0 = (in_band / band_h) * BT;
  const int m0 = (band * GM + in_band % band_h) * BM;
  const int split = get_group_id(1), splits = get_num_groups(1);
  const int c_begin = split * chunks_per_split, c_end = min(chunks, c_begin + chunks_per_split);

  clq_tiled_src src;
  src.sz_gl = (__global const uint2*)sz_gl;
  src.wgroup_gl = wgroup_gl;
  src.tiles = tiles;
#pragma unroll
  for (int nt = 0; nt < TN; ++nt) src.sz_at[nt] = min(tile0 + wn * TN + nt, tiles - 1) * 8 + g;

  // ldmatrix addresses, without the stage: lane L names row (L & 7) of matrix L >> 3, i.e. of
  // piece 4h + (L >> 3) of its row block; the swizzle uses the row's low bits, which are L & 7.
  const uint x_lane = (uint)(wm * MBW * 8 + (lane & 7)) * 128u;
  const uint x_piece0 = (uint)(((lane >> 3) ^ (lane & 7)) * 16), x_piece1 = (uint)(((4 + (lane >> 3)) ^ (lane & 7)) * 16);

  clq_tiled_io io;
  io.qf_gl = qf_gl;
  io.sz_gl = sz_gl;
  io.desc_gl = desc_gl;
  io.x_gl = x_gl;
  io.M = M;
  io.ldx = ldx;
  io.m0 = m0;
  io.tile0 = tile0;
  io.tiles = tiles;
  io.chunks = chunks;
  io.c_end = c_end;
  io.tid = tid;
  int d_pf = c_begin < c_end ? desc_gl[c_begin] : 0;

  clq_tiled_state st;
#pragma unroll
  for (int nt = 0; nt < TN; ++nt)
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) st.acc[nt][mb][r] = st.part[nt][mb][r] = 0.0f;
  st.cur = -1;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) clq_tiled_issue(&io, c_begin + s, xl[s], wl[s], szl[s], &dl[s], &d_pf);

  int stage = 0;
  for (int c = c_begin; c < c_end; ++c) {
    clq_cp_wait();
    barrier(CLK_LOCAL_MEM_FENCE);  // chunk c visible to all; everyone is done with chunk c - 1
    const int ns = stage == 0 ? STAGES - 1 : stage - 1;
    clq_tiled_issue(&io, c + STAGES - 1, xl[ns], wl[ns], szl[ns], &dl[ns], &d_pf);

    uint4 q4[TN];
#pragma unroll
    for (int nt = 0; nt < TN; ++nt) q4[nt] = wl[stage][(wn * TN + nt) * 32 + lane];
    const uint xs = (uint)(size_t)&xl[stage][0] + x_lane;
    uint b[2][MBW][4];  // [k32 half][row block]: b0, b1 of step 2h, then of step 2h + 1
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb) {
      clq_ldsm_x4(b[0][mb], xs + mb * 1024u + x_piece0);
      clq_ldsm_x4(b[1][mb], xs + mb * 1024u + x_piece1);
    }
    const int desc = dl[stage];
    const int d0 = desc & (CLQ_MIXED - 1);
    if (!(desc & CLQ_MIXED)) {
      if (d0 != st.cur) {
        uint2 sz[TN];
        __local const uint2* sl = (__local const uint2*)&szl[stage][0];
#pragma unroll
        for (int nt = 0; nt < TN; ++nt) sz[nt] = sl[(wn * TN + nt) * 8 + g];
        clq_tiled_switch(&st, d0, sz);
      }
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        uint q[TN], b0[MBW], b1[MBW];
#pragma unroll
        for (int nt = 0; nt < TN; ++nt) q[nt] = s == 0 ? q4[nt].x : s == 1 ? q4[nt].y : s == 2 ? q4[nt].z : q4[nt].w;
#pragma unroll
        for (int mb = 0; mb < MBW; ++mb) {
          b0[mb] = b[s >> 1][mb][(s & 1) * 2];
          b1[mb] = b[s >> 1][mb][(s & 1) * 2 + 1];
        }
        clq_tiled_step(&st, q, b0, b1, 0);
      }
    } else {
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        uint q[TN], b0[MBW], b1[MBW];
#pragma unroll
        for (int nt = 0; nt < TN; ++nt) q[nt] = s == 0 ? q4[nt].x : s == 1 ? q4[nt].y : s == 2 ? q4[nt].z : q4[nt].w;
#pragma unroll
        for (int mb = 0; mb < MBW; ++mb) {
          b0[mb] = b[s >> 1][mb][(s & 1) * 2];
          b1[mb] = b[s >> 1][mb][(s & 1) * 2 + 1];
        }
        const int w = c * 8 + 2 * s;
        const int ga = wgroup_gl[w], gb = wgroup_gl[w + 1];
        if (ga != st.cur) clq_tiled_switch_global(&st, &src, ga);
        if (gb == ga) {
          clq_tiled_step(&st, q, b0, b1, 0);
        } else {
          clq_tiled_step(&st, q, b0, b1, 1);
          clq_tiled_switch_global(&st, &src, gb);
          clq_tiled_step(&st, q, b0, b1, 2);
        }
      }
    }
    stage = stage == STAGES - 1 ? 0 : stage + 1;
  }
  clq_cp_wait();  // nothing may still write local memory when the work-group ends
  if (st.cur >= 0) clq_tiled_fold(&st);

  // acc[nt][mb][r]: column (tile0 + wn TN + nt) * 16 + g (+8 for r >= 2), row
  // m0 + (wm MBW + mb) * 8 + 2t (+1 for odd r).
  const int t = lane & 3;
#pragma unroll
  for (int nt = 0; nt < TN; ++nt)
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int n = (tile0 + wn * TN + nt) * 16 + g + (r >= 2 ? 8 : 0);
        const int m = m0 + (wm * MBW + mb) * 8 + 2 * t + (r & 1);
        if (n >= N || m >= M) continue;
        if (splits == 1) clq_store_out(y_gl, (size_t)m * N + n, st.acc[nt][mb][r]);
        else part_gl[((size_t)split * M + m) * N + n] = st.acc[nt][mb][r];
      }
}
