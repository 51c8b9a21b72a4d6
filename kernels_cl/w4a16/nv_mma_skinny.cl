// W4A16 for skinny M (decode and small batches) on NVIDIA tensor cores (sm80+), OpenCL C with
// inline PTX. Chosen by the capability table only where the mma known-answer probe passed.
//
// Operands swapped: the tensor cores compute y^T = W^T x^T, so the int4 weights are the 16x16
// A operand (16 output columns x 16 rows of K) and the activations the 16x8 B operand (8 rows of
// x). At M = 1 that wastes 7 of 8 B columns instead of 15 of 16 A rows, and one 32-bit word of
// nibbles per lane is exactly one A fragment.
//
// Weight layout (host: frag_layout in host/ops/w4a16/w4a16_gemm.cpp), per 16-column tile and per
// 64-row chunk of the packed K, 32 lanes x one uint4 (a warp reads 512 contiguous bytes):
//
//   qf[tile][chunk][lane][s], s = 0..3: 16-row step s of the chunk, for lane = 4g + t:
//     bits 4r + 16h, r = 0..3, h = 0..1 hold the nibble of A register r, half h:
//       r = 0: column g,     row 2t + h        r = 2: column g,     row 8 + 2t + h
//       r = 1: column g + 8, row 2t + h        r = 3: column g + 8, row 8 + 2t + h
//   so (word >> 4r) & 0x000F000F | bias is register r as two 16-bit values bias + q (nv_mma.clh),
//   and one subtraction of bias + z makes it q - z, exact: every tensor-core product is exact.
//   sz[group][tile][g] = {s(g) | s(g+8) << 16 (fp16 bits), z(g) | z(g+8) << 16}
//
// Activations come the same way, from w4a16_gather_frag (w4a16/gather.cl): per block of 8 rows
// and per chunk, 32 lanes x 32 bytes, the lane's B fragments {b0, b1} of the four steps, so a
// warp's activation loads are two 512-byte contiguous reads per chunk instead of one 16-byte piece
// of each of 8 rows per register (8 L1 wavefronts each: what limited M = 16 with plain rows).
//
// Scales are applied in fp32: each group's steps accumulate into `part` (the mma's own fp32
// accumulator; two of them, alternate steps, so consecutive mmas do not wait on each other) and
// fold into `acc += part * s` when the group ends, once per group instead of once per step, and
// without rounding (q - z) * s to 16 bits (bf16 would cost 2^-9 per weight).
//
// Latency, not arithmetic, limits a skinny GEMM, so nothing waits on a load it could have issued
// earlier. Chunks go through a three-stage pipeline: a chunk's descriptor (its group, and whether
// all its 8 words share it) is loaded two batches of UNROLL chunks ahead; its weights, activations
// and the scales/zeros of its group one batch ahead; then it is used. A chunk whose words span
// groups (act-order padding, groups < 64 rows) takes a per-step path that looks groups up as it
// goes, and a step whose two words lie in different groups runs as two halves.
//
// Work split: a work-group of KW warps owns NT tiles (16 * NT columns) and 8 * MB rows of x
// (dimension 2); its K range (split-K, dimension 1) is cut into KW contiguous parts, one per
// warp, and their sums meet in local memory, added in warp order. With several splits each work-group writes fp32 partials and the last one
// to finish a tile (atomic counter) sums them in split order and stores y: one launch,
// deterministic. The counter is reset by that last work-group.
#include "common/act_io.clh"
#include "common/nv_mma.clh"

#ifndef NT
#define NT 1  // 16-column tiles per work-group
#endif
#ifndef MB
#define MB 1  // 8-row B fragments per work-group (rows 8 * MB)
#endif
#ifndef KW
#define KW 4  // warps per work-group, each a part of the K range
#endif
#ifndef UNROLL
#define UNROLL 1  // chunks per pipeline batch: 1, 2 or 4
#endif
#ifndef XDIRECT
#define XDIRECT 0  // 1: read B fragments from the rows of x (xf_gl is x [M][K]) instead of xf
#endif
#define CLQ_MIXED 0x40000000  // descriptor bit: the chunk's words are not all in one group

#define CLQ_INLINE inline __attribute__((always_inline))

typedef struct {
  float acc[NT][MB][4];      // folded result
  float part[2][NT][MB][4];  // current group, unscaled; [step parity]
  float s[NT][2];            // scales of columns g, g + 8 for the current group
  uint zm[NT][2];            // bias + z of columns g, g + 8, in both halves
  int cur;                   // current group, -1 before the first
} clq_skinny_state;

typedef struct {
  uint4 q[NT];      // the lane's A-fragment words of the four steps, per tile
  uint4 x[MB][2];   // the lane's B fragments: {b0, b1} of steps 0, 1 and of steps 2, 3
  uint2 sz[NT];     // scales/zeros of the chunk's (first) group
  int desc;         // that group, | CLQ_MIXED when the words span groups
} clq_chunk;

typedef struct {
  __global const uint4* q_rd[NT];
  bool tile_ok[NT];
  __global const uint4* x_rd;  // this lane's first uint4 of the row block, chunk 0
  __global const ushort* xd_rd[MB];  // XDIRECT: row 8mb + g of x, column 2t
  bool row_ok[MB];
  int t2, kvalid;
  __global const uint2* sz_gl;
  int sz_at[NT];               // this lane's entry of each tile within a group's row of sz
  __global const int* wgroup_gl;
  __global const int* desc_gl;
  int tiles, chunks, c_end;
} clq_skinny_src;

CLQ_INLINE void clq_skinny_fold(clq_skinny_state* st) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float sc = st->s[nt][r >> 1];
        st->acc[nt][mb][r] = fma(st->part[0][nt][mb][r] + st->part[1][nt][mb][r], sc, st->acc[nt][mb][r]);
        st->part[0][nt][mb][r] = 0.0f;
        st->part[1][nt][mb][r] = 0.0f;
      }
}

CLQ_INLINE uint2 clq_skinny_sz(const clq_skinny_src* src, int grp, int nt) {
  return src->sz_gl[(size_t)grp * src->tiles * 8 + src->sz_at[nt]];
}

// Folds the finished group and makes `grp`, whose scales/zeros are sz, current.
CLQ_INLINE void clq_skinny_switch(clq_skinny_state* st, int grp, const uint2* sz) {
  if (st->cur >= 0) clq_skinny_fold(st);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    st->s[nt][0] = clq_fp16_to_f32((ushort)(sz[nt].x & 0xFFFFu));
    st->s[nt][1] = clq_fp16_to_f32((ushort)(sz[nt].x >> 16));
    const uint z0 = sz[nt].y & 0xFFFFu, z1 = sz[nt].y >> 16;
    st->zm[nt][0] = CLQ_NIB_BIAS2 | z0 | (z0 << 16);
    st->zm[nt][1] = CLQ_NIB_BIAS2 | z1 | (z1 << 16);
  }
  st->cur = grp;
}

CLQ_INLINE void clq_skinny_switch_load(clq_skinny_state* st, const clq_skinny_src* src, int grp) {
  uint2 sz[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) sz[nt] = clq_skinny_sz(src, grp, nt);
  clq_skinny_switch(st, grp, sz);
}

// One 16-row step into part[p]: `which` 0 = both words, 1 = only the first (rows 0-7), 2 = only
// the second. bq: {b0, b1} per row block.
CLQ_INLINE void clq_skinny_step(clq_skinny_state* st, const uint* q, const uint2* bq, int p, int which) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const uint w = q[nt];
    const uint a0 = which == 2 ? 0u : clq_nib_a(w, 0, st->zm[nt][0]);
    const uint a1 = which == 2 ? 0u : clq_nib_a(w, 1, st->zm[nt][1]);
    const uint a2 = which == 1 ? 0u : clq_nib_a(w, 2, st->zm[nt][0]);
    const uint a3 = which == 1 ? 0u : clq_nib_a(w, 3, st->zm[nt][1]);
#pragma unroll
    for (int mb = 0; mb < MB; ++mb) clq_mma16816(st->part[p][nt][mb], a0, a1, a2, a3, bq[mb].x, bq[mb].y);
  }
}

// Stage 2 of the pipeline for the warp's i-th chunk (chunk index c, descriptor d from stage 1).
CLQ_INLINE void clq_skinny_load(clq_chunk* ch, const clq_skinny_src* src, int c, int d) {
  const bool ok = c < src->c_end;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    ch->q[nt] = ok && src->tile_ok[nt] ? src->q_rd[nt][(size_t)c * 32] : (uint4)(0u);
    ch->sz[nt] = ok ? clq_skinny_sz(src, d & (CLQ_MIXED - 1), nt) : (uint2)(0u);
  }
#if XDIRECT
  // Rows of x as they are (no act-order, 16-bit input, few rows): lanes of rows past M load nothing.
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    uint v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int k = c * 64 + (j >> 1) * 16 + (j & 1) * 8;  // + 2t: already in xd_rd
      v[j] = ok && src->row_ok[mb] && k + src->t2 < src->kvalid ? *(const __global uint*)(src->xd_rd[mb] + k) : 0u;
    }
    ch->x[mb][0] = (uint4)(v[0], v[1], v[2], v[3]);
    ch->x[mb][1] = (uint4)(v[4], v[5], v[6], v[7]);
  }
#else
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    const __global uint4* xp = src->x_rd + ((size_t)mb * src->chunks + c) * 64;
    ch->x[mb][0] = ok ? xp[0] : (uint4)(0u);
    ch->x[mb][1] = ok ? xp[1] : (uint4)(0u);
  }
#endif
  ch->desc = d;
}

CLQ_INLINE int clq_skinny_desc(const clq_skinny_src* src, int c) { return c < src->c_end ? src->desc_gl[c] : 0; }

// Stage 3: the four 16-row steps of chunk c.
CLQ_INLINE void clq_skinny_chunk(clq_skinny_state* st, const clq_skinny_src* src, const clq_chunk* ch, int c) {
  uint2 b[4][MB];
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    b[0][mb] = ch->x[mb][0].xy;
    b[1][mb] = ch->x[mb][0].zw;
    b[2][mb] = ch->x[mb][1].xy;
    b[3][mb] = ch->x[mb][1].zw;
  }
  const int d0 = ch->desc & (CLQ_MIXED - 1);
  if (d0 != st->cur) clq_skinny_switch(st, d0, ch->sz);
  if (!(ch->desc & CLQ_MIXED)) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      uint q[NT];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) q[nt] = s == 0 ? ch->q[nt].x : s == 1 ? ch->q[nt].y : s == 2 ? ch->q[nt].z : ch->q[nt].w;
      clq_skinny_step(st, q, b[s], s & 1, 0);
    }
    return;
  }
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    uint q[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) q[nt] = s == 0 ? ch->q[nt].x : s == 1 ? ch->q[nt].y : s == 2 ? ch->q[nt].z : ch->q[nt].w;
    const int w = c * 8 + 2 * s;
    const int ga = src->wgroup_gl[w], gb = src->wgroup_gl[w + 1];
    if (ga != st->cur) clq_skinny_switch_load(st, src, ga);
    if (gb == ga) {
      clq_skinny_step(st, q, b[s], s & 1, 0);
    } else {
      clq_skinny_step(st, q, b[s], s & 1, 1);
      clq_skinny_switch_load(st, src, gb);
      clq_skinny_step(st, q, b[s], s & 1, 2);
    }
  }
}

__kernel __attribute__((reqd_work_group_size(32 * KW, 1, 1)))
void w4a16_gemm_nv_skinny(__global const uint4* restrict qf_gl,    // [tiles][chunks][32] (see above)
                          __global const uint2* restrict sz_gl,    // [G][tiles][8]
                          __global const int* restrict wgroup_gl,  // [chunks * 8] group of each word
                          __global const int* restrict desc_gl,    // [chunks] chunk descriptors
                          __global const uint4* restrict xf_gl,    // [row blocks][chunks][32][2], or x
                          __global float* restrict part_gl,        // [splits][M][N] when split
                          __global uint* restrict count_gl,        // [tile groups * row blocks], zero
                          __global clq_out_t* restrict y_gl,       // [M][N]
                          int M, int N, int K, int tiles, int chunks, int chunks_per_split) {
  __local float red[(KW > 1 ? KW - 1 : 1) * 32 * NT * MB * 4];
  __local int last;
  const int lane = get_local_id(0) & 31, warp = get_local_id(0) >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tile0 = get_group_id(0) * NT;
  const int split = get_group_id(1), splits = get_num_groups(1);
  const int m0 = get_group_id(2) * 8 * MB;

  clq_skinny_src src;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    src.tile_ok[nt] = tile0 + nt < tiles;
    src.q_rd[nt] = qf_gl + (size_t)min(tile0 + nt, tiles - 1) * chunks * 32 + lane;
    src.sz_at[nt] = min(tile0 + nt, tiles - 1) * 8 + g;
  }
  src.x_rd = xf_gl + (size_t)get_group_id(2) * MB * chunks * 64 + 2 * lane;
#pragma unroll
  for (int mb = 0; mb < MB; ++mb) {
    const int m = m0 + mb * 8 + g;
    src.row_ok[mb] = m < M;
    src.xd_rd[mb] = (__global const ushort*)xf_gl + (size_t)min(m, M - 1) * K + 2 * t;
  }
  src.t2 = 2 * t;
  src.kvalid = K;
  src.sz_gl = sz_gl;
  src.wgroup_gl = wgroup_gl;
  src.desc_gl = desc_gl;
  src.tiles = tiles;
  src.chunks = chunks;
  // This warp's chunks: one contiguous KW-th of the split's range (dealing the chunks to the
  // warps in turn, so that they read neighbouring blocks together, measured 10-15% slower).
  const int s_begin = split * chunks_per_split, s_end = min(chunks, s_begin + chunks_per_split);
  const int per_warp = (s_end - s_begin + KW - 1) / KW;
  const int c_begin = min(s_end, s_begin + warp * per_warp);
  src.c_end = min(s_end, c_begin + per_warp);
  const int step = 1;

  clq_skinny_state st;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) st.acc[nt][mb][r] = st.part[0][nt][mb][r] = st.part[1][nt][mb][r] = 0.0f;
  st.cur = -1;

  // Pipeline (see the top): descriptors two batches ahead, data one batch ahead.
  const int batch = UNROLL * step;
  clq_chunk a0, a1, a2, a3, n0, n1, n2, n3;
  int d0 = clq_skinny_desc(&src, c_begin), d1 = 0, d2 = 0, d3 = 0;
#if UNROLL >= 2
  d1 = clq_skinny_desc(&src, c_begin + step);
#endif
#if UNROLL >= 4
  d2 = clq_skinny_desc(&src, c_begin + 2 * step);
  d3 = clq_skinny_desc(&src, c_begin + 3 * step);
#endif
  clq_skinny_load(&a0, &src, c_begin, d0);
#if UNROLL >= 2
  clq_skinny_load(&a1, &src, c_begin + step, d1);
#endif
#if UNROLL >= 4
  clq_skinny_load(&a2, &src, c_begin + 2 * step, d2);
  clq_skinny_load(&a3, &src, c_begin + 3 * step, d3);
#endif
  d0 = clq_skinny_desc(&src, c_begin + batch);
#if UNROLL >= 2
  d1 = clq_skinny_desc(&src, c_begin + batch + step);
#endif
#if UNROLL >= 4
  d2 = clq_skinny_desc(&src, c_begin + batch + 2 * step);
  d3 = clq_skinny_desc(&src, c_begin + batch + 3 * step);
#endif
  for (int c = c_begin; c < src.c_end; c += batch) {
    clq_skinny_load(&n0, &src, c + batch, d0);
    d0 = clq_skinny_desc(&src, c + 2 * batch);
#if UNROLL >= 2
    clq_skinny_load(&n1, &src, c + batch + step, d1);
    d1 = clq_skinny_desc(&src, c + 2 * batch + step);
#endif
#if UNROLL >= 4
    clq_skinny_load(&n2, &src, c + batch + 2 * step, d2);
    d2 = clq_skinny_desc(&src, c + 2 * batch + 2 * step);
    clq_skinny_load(&n3, &src, c + batch + 3 * step, d3);
    d3 = clq_skinny_desc(&src, c + 2 * batch + 3 * step);
#endif
    clq_skinny_chunk(&st, &src, &a0, c);
    a0 = n0;
#if UNROLL >= 2
    if (c + step < src.c_end) clq_skinny_chunk(&st, &src, &a1, c + step);
    a1 = n1;
#endif
#if UNROLL >= 4
    if (c + 2 * step < src.c_end) clq_skinny_chunk(&st, &src, &a2, c + 2 * step);
    if (c + 3 * step < src.c_end) clq_skinny_chunk(&st, &src, &a3, c + 3 * step);
    a2 = n2;
    a3 = n3;
#endif
  }
  if (st.cur >= 0) clq_skinny_fold(&st);

  // Warps 1.. hand their sums to warp 0, which adds them in warp order.
  if (KW > 1) {
    if (warp > 0) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int mb = 0; mb < MB; ++mb)
#pragma unroll
          for (int r = 0; r < 4; ++r) red[(((warp - 1) * NT + nt) * MB + mb) * 128 + r * 32 + lane] = st.acc[nt][mb][r];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (warp == 0) {
#pragma unroll
      for (int j = 1; j < KW; ++j)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int mb = 0; mb < MB; ++mb)
#pragma unroll
            for (int r = 0; r < 4; ++r) st.acc[nt][mb][r] += red[(((j - 1) * NT + nt) * MB + mb) * 128 + r * 32 + lane];
    }
  }

  // acc[nt][mb][r]: column tile*16 + g (+8 for r >= 2), row m0 + 8mb + 2t (+1 for odd r). One
  // split stores y; several store partials, and the last work-group of the tile sums them below.
  if (warp == 0) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int n = (tile0 + nt) * 16 + g + (r >= 2 ? 8 : 0), m = m0 + mb * 8 + 2 * t + (r & 1);
          if (n >= N || m >= M) continue;
          if (splits == 1) clq_store_out(y_gl, (size_t)m * N + n, st.acc[nt][mb][r]);
          else part_gl[((size_t)split * M + m) * N + n] = st.acc[nt][mb][r];
        }
    if (splits > 1) clq_fence_gpu();
  }
  if (splits == 1) return;
  barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
  __global uint* counter = count_gl + get_group_id(2) * get_num_groups(0) + get_group_id(0);
  if (get_local_id(0) == 0) last = atomic_inc(counter) == (uint)(splits - 1);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (!last || warp != 0) return;
  clq_fence_gpu();
  const volatile __global float* pv = part_gl;  // other work-groups' partials: not from L1
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int n = (tile0 + nt) * 16 + g + (r >= 2 ? 8 : 0), m = m0 + mb * 8 + 2 * t + (r & 1);
        if (n >= N || m >= M) continue;
        float v = 0.0f;
        for (int i = 0; i < splits; ++i) v += pv[((size_t)i * M + m) * N + n];
        clq_store_out(y_gl, (size_t)m * N + n, v);
      }
  if (lane == 0) atomic_xchg(counter, 0u);
}
