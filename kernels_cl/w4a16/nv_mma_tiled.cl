// W4A16 for prefill-sized M on NVIDIA tensor cores (sm80+), OpenCL C with inline PTX: local-
// memory tiles filled by cp.async several stages ahead, activations read by ldmatrix, int4 weights
// dequantized in registers. Chosen by the capability table only where the mma known-answer probe
// passed; nv_mma_skinny covers small M with the same weight layout.
//
// Operands as in nv_mma_skinny (w4a16/nv_mma_skinny.cl has the layout picture): the tensor
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
// Numerics as in nv_mma_skinny: (q - z) is exact in fp16/bf16 and so is every product in the
// tensor core; a tile's four steps of a chunk sum in a fresh fp32 accumulator and fold into the
// result with one fma by the group's scale (acc += s * sum), so (q - z) * s is never rounded to 16
// bits (bf16 would lose SPEC's 1e-3 that way). Folding per chunk rather than per group keeps one
// tile's sums live at a time instead of all of them: 167 registers instead of 242 (H200).
// Chunks whose 8 words span groups (act-order padding, groups < 64 rows) take a per-step path
// that reads the groups and scales from global memory.
//
// Split-K (dimension 1) cuts the chunks into ranges when the tiles alone do not fill the device;
// each range stores fp32 partials, w4a16_splitk_reduce (w4a16/gemv.cl) sums them in split order.
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
#define WM 2  // warps along M
#endif
#ifndef GM
#define GM 8  // row blocks per band of the raster order (see the kernel)
#endif
#ifndef STAGES
#define STAGES 3  // chunks in local memory: STAGES - 1 in flight while one is used
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
  float v[TN][MBW][4];  // the warp's outputs: [tile][row block][C register]
} clq_tiled_acc;
typedef struct {
  uint v[4][MBW][2];  // B fragments of a chunk: [16-row step][row block]{b0, b1}
} clq_tiled_b;

// One 16-row step of one tile into p (MBW blocks of 4): the A registers are (q - z) exactly, from
// the word's nibbles and bias + z (zm0: column g, zm1: column g + 8); `which` 0 = both words,
// 1 = only the first (rows 0-7), 2 = only the second; `first` starts p at zero.
CLQ_INLINE void clq_tiled_mma_step(float (*p)[4], uint w, uint zm0, uint zm1, const uint (*bs)[2], int which,
                                   bool first) {
  const uint a0 = which == 2 ? 0u : clq_nib_a(w, 0, zm0);
  const uint a1 = which == 2 ? 0u : clq_nib_a(w, 1, zm1);
  const uint a2 = which == 1 ? 0u : clq_nib_a(w, 2, zm0);
  const uint a3 = which == 1 ? 0u : clq_nib_a(w, 3, zm1);
#pragma unroll
  for (int mb = 0; mb < MBW; ++mb) {
    if (first) clq_mma16816_zero(p[mb], a0, a1, a2, a3, bs[mb][0], bs[mb][1]);
    else clq_mma16816(p[mb], a0, a1, a2, a3, bs[mb][0], bs[mb][1]);
  }
}

CLQ_INLINE uint clq_zbias(uint z) { return CLQ_NIB_BIAS2 | z | (z << 16); }

// acc[nt] += s * p: the scales (fp16 bits of columns g, g + 8 in sz.x) applied once per pass.
CLQ_INLINE void clq_tiled_fold(clq_tiled_acc* acc, int nt, float (*p)[4], uint2 sz) {
  const float s0 = clq_fp16_to_f32((ushort)(sz.x & 0xFFFFu)), s1 = clq_fp16_to_f32((ushort)(sz.x >> 16));
#pragma unroll
  for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc->v[nt][mb][r] = fma(p[mb][r], r < 2 ? s0 : s1, acc->v[nt][mb][r]);
}

// A whole chunk of tile nt in one group (sz: its scales/zeros): four steps summed by the tensor
// cores, then one fold.
CLQ_INLINE void clq_tiled_chunk(clq_tiled_acc* acc, int nt, uint4 q4, const clq_tiled_b* b, uint2 sz) {
  const uint zm0 = clq_zbias(sz.y & 0xFFFFu), zm1 = clq_zbias(sz.y >> 16);
  float p[MBW][4];
  clq_tiled_mma_step(p, q4.x, zm0, zm1, b->v[0], 0, true);
  clq_tiled_mma_step(p, q4.y, zm0, zm1, b->v[1], 0, false);
  clq_tiled_mma_step(p, q4.z, zm0, zm1, b->v[2], 0, false);
  clq_tiled_mma_step(p, q4.w, zm0, zm1, b->v[3], 0, false);
  clq_tiled_fold(acc, nt, p, sz);
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

  // The mixed-chunk path reads scales/zeros from global memory: this lane's entry per tile.
  __global const uint2* sz2 = (__global const uint2*)sz_gl;
  int sz_at[TN];
#pragma unroll
  for (int nt = 0; nt < TN; ++nt) sz_at[nt] = min(tile0 + wn * TN + nt, tiles - 1) * 8 + g;

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

  clq_tiled_acc acc;
#pragma unroll
  for (int nt = 0; nt < TN; ++nt)
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc.v[nt][mb][r] = 0.0f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) clq_tiled_issue(&io, c_begin + s, xl[s], wl[s], szl[s], &dl[s], &d_pf);

  int stage = 0;
  for (int c = c_begin; c < c_end; ++c) {
    clq_cp_wait();
    barrier(CLK_LOCAL_MEM_FENCE);  // chunk c visible to all; everyone is done with chunk c - 1
    const int ns = stage == 0 ? STAGES - 1 : stage - 1;
    clq_tiled_issue(&io, c + STAGES - 1, xl[ns], wl[ns], szl[ns], &dl[ns], &d_pf);

    const uint xs = (uint)(size_t)&xl[stage][0] + x_lane;
    clq_tiled_b bf;
#pragma unroll
    for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint r[4];
        clq_ldsm_x4(r, xs + mb * 1024u + (h ? x_piece1 : x_piece0));
        bf.v[2 * h][mb][0] = r[0];
        bf.v[2 * h][mb][1] = r[1];
        bf.v[2 * h + 1][mb][0] = r[2];
        bf.v[2 * h + 1][mb][1] = r[3];
      }
    __local const uint4* wq = &wl[stage][wn * TN * 32 + lane];
    __local const uint2* sl = (__local const uint2*)&szl[stage][0] + wn * TN * 8 + g;
    const int desc = dl[stage];
    if (!(desc & CLQ_MIXED)) {
#pragma unroll
      for (int nt = 0; nt < TN; ++nt) clq_tiled_chunk(&acc, nt, wq[nt * 32], &bf, sl[nt * 8]);
    } else {
      // Words of several groups: step by step, each (half) step folded with its own group's scales.
#pragma unroll 1
      for (int s = 0; s < 4; ++s) {
        const int w = c * 8 + 2 * s;
        const int ga = wgroup_gl[w], gb = wgroup_gl[w + 1];
        uint bs[MBW][2];
#pragma unroll
        for (int mb = 0; mb < MBW; ++mb)
#pragma unroll
          for (int j = 0; j < 2; ++j)
            bs[mb][j] = s == 0 ? bf.v[0][mb][j] : s == 1 ? bf.v[1][mb][j] : s == 2 ? bf.v[2][mb][j] : bf.v[3][mb][j];
#pragma unroll
        for (int nt = 0; nt < TN; ++nt) {
          const uint4 q4 = wq[nt * 32];
          const uint q = s == 0 ? q4.x : s == 1 ? q4.y : s == 2 ? q4.z : q4.w;
          float p[MBW][4];
          const uint2 sa = sz2[(size_t)ga * tiles * 8 + sz_at[nt]];
          if (ga == gb) {
            clq_tiled_mma_step(p, q, clq_zbias(sa.y & 0xFFFFu), clq_zbias(sa.y >> 16), bs, 0, true);
            clq_tiled_fold(&acc, nt, p, sa);
          } else {
            const uint2 sb = sz2[(size_t)gb * tiles * 8 + sz_at[nt]];
            clq_tiled_mma_step(p, q, clq_zbias(sa.y & 0xFFFFu), clq_zbias(sa.y >> 16), bs, 1, true);
            clq_tiled_fold(&acc, nt, p, sa);
            clq_tiled_mma_step(p, q, clq_zbias(sb.y & 0xFFFFu), clq_zbias(sb.y >> 16), bs, 2, true);
            clq_tiled_fold(&acc, nt, p, sb);
          }
        }
      }
    }
    stage = stage == STAGES - 1 ? 0 : stage + 1;
  }
  clq_cp_wait();  // nothing may still write local memory when the work-group ends

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
        if (splits == 1) clq_store_out(y_gl, (size_t)m * N + n, acc.v[nt][mb][r]);
        else part_gl[((size_t)split * M + m) * N + n] = acc.v[nt][mb][r];
      }
}
