// Grouped expert GEMMs of the fused MoE over the aligned blocks (moe/align.cl), with the SwiGLU
// and the routing weight fused into the epilogues, and the combine:
//
//   gate_up (MODE 0): a[s][n] = silu(x[tok(s)] . w13[e][:, n]) * (x[tok(s)] . w13[e][:, I + n])
//   down    (MODE 1): y2[id(s)][n] = topk_w[id(s)] * (a[s] . w2[e][:, n])
//   combine         : out[t][n] = sum_{j < k} y2[t*k + j][n], rounded once to the output type
//
// s runs over sorted positions, e = expert_ids[s / MOE_BS], id(s) = sorted_ids[s] = t*k + j,
// tok(s) = id / k; padding positions (id = T*k) are computed on a valid row and never stored.
// Blocks past num_post_padded exit at once, so the host launches an upper bound.
//
// The weights are the dense ops' layouts, one expert after another at a fixed stride, and the
// inner loops are theirs (common/gemv_core.clh): WEIGHT_KIND 0 = fp16/bf16, 1 = int4 (GPTQ/AWQ;
// act-order experts read rows gathered per expert, moe_gather_act_order below), 2 = e4m3 with
// 128x128 block scales, 3 = int8 weight-only (GPTQ 8-bit, compressed-tensors int8: the
// w8a16_int8 layout, fp32 scales and u16 zeros, act-order as for int4). Work split: VEC_COLS columns x GEMV_M
// rows per work-item; a block of MOE_BS rows is MOE_BS / GEMV_M work-groups in dimension 2.
// Decode has few rows, so dimension 1 splits K (as the dense gemv does) when the columns alone
// leave the device idle: each split then writes raw partial sums, and moe_reduce_gate_up /
// moe_reduce_down add them in a fixed order and apply the SwiGLU / routing weight.
#include "common/act_io.clh"
#include "common/gemv_core.clh"

#ifndef WEIGHT_KIND
#define WEIGHT_KIND 0
#endif
#ifndef MOE_BS
#define MOE_BS 1  // rows per aligned block
#endif
#ifndef MODE
#define MODE 0
#endif
#define CHUNKS (MOE_BS / GEMV_M)

// res[] += x rows . W[:, n .. n + VEC_COLS) over K units [u0, u1) of the expert whose weights start
// at the pointers (units: int4 words of 8 rows, int8 words of 4 rows, e4m3 blocks of 128 rows,
// dense rows). sc_gl / z_gl: group scales and zeros, fp16 / u8 for int4, fp32 / u16 for int8.
inline void clq_moe_accumulate(int n, __global const void* w_gl, __global const void* sc_gl,
                               __global const void* z_gl, __global const float* sw_gl,
                               __global const int* gstart_gl, __global const int* wgroup_gl, int Np, int block_n,
                               int Kp, __global const float** x_rd, __global const float** aux_rd, int u0, int u1,
                               fvec_t* res) {
#if WEIGHT_KIND == 1
  const int words = Kp / 8;
  __global const uint* q = (__global const uint*)w_gl + (size_t)(n / block_n) * words * block_n + n % block_n;
  clq_w4_accumulate(q, block_n, (__global const ushort*)sc_gl + n, (__global const uchar*)z_gl + n, Np, gstart_gl,
                    wgroup_gl, x_rd, aux_rd, u0, u1, res);
#elif WEIGHT_KIND == 3
  const int words = Kp / 4;
  __global const uint* q = (__global const uint*)w_gl + (size_t)(n / block_n) * words * block_n + n % block_n;
  clq_w8_accumulate(q, block_n, (__global const float*)sc_gl + n, (__global const ushort*)z_gl + n, Np, gstart_gl,
                    wgroup_gl, x_rd, u0, u1, res);
#elif WEIGHT_KIND == 2
  const int words = Kp / 4;
  __global const uint* q = (__global const uint*)w_gl + (size_t)(n / block_n) * words * block_n + n % block_n;
  clq_fp8_accumulate(q, block_n, sw_gl + (size_t)(n / 128) * (Kp / 128), x_rd, aux_rd, u0, u1, res);
#else
  __global const ushort* w = (__global const ushort*)w_gl + (size_t)(n / block_n) * Kp * block_n + n % block_n;
  clq_dense_accumulate(w, block_n, x_rd, u0, u1, res);
#endif
}

__kernel void moe_expert_gemm(__global const void* restrict w_gl, long w_stride,     // weights, per-expert stride (bytes)
                              __global const void* restrict sc_gl, __global const void* restrict z_gl,
                              long g_stride,  // int4/int8 scales/zeros per expert (elements)
                              __global const float* restrict sw_gl, long sw_stride,   // e4m3 block scales per expert
                              __global const int* restrict gstart_gl, __global const int* restrict wgroup_gl,
                              __global const float* restrict x_gl,    // staged rows [R][Kp]
                              __global const float* restrict aux_gl,  // int4: word sums [R][Kp/8]; e4m3: scales [R][Kp/128]
                              int x_by_token,                         // rows are tokens (gate_up) or sorted positions
                              __global const int* restrict sorted_gl, __global const int* restrict expert_ids_gl,
                              __global const int* restrict npp_gl, __global const float* restrict topk_w_gl,
                              __global float* restrict out_gl, int N_out, int I_offset, int Np, int block_n, int Kp,
                              int topk,  // x_by_token: staged row = id / topk (1: a row per assignment, act-order)
                              int sentinel,
                              int units, int units_per_split,        // K units in all / per split
                              __global float* restrict part_gl, int S_max) {  // [splits][S_max][N_part]
  const int n0 = get_global_id(0) * VEC_COLS;
  const int split = get_group_id(1);
  const int splits = get_num_groups(1);
  const int u0 = split * units_per_split, u1 = min(units, u0 + units_per_split);
  const int gb = get_group_id(2);
  const int b = gb / CHUNKS;
  const int s0 = b * MOE_BS + (gb % CHUNKS) * GEMV_M;
  if (n0 >= N_out || s0 >= npp_gl[0]) return;
  const int e = expert_ids_gl[b];
  if (e < 0) return;
#if WEIGHT_KIND == 1
  const int aux_stride = Kp / 8;
#elif WEIGHT_KIND == 2
  const int aux_stride = Kp / 128;
#else
  const int aux_stride = 0;
#endif
  int ids[GEMV_M];
  __global const float* x_rd[GEMV_M];
  __global const float* aux_rd[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) {
    ids[i] = sorted_gl[s0 + i];
    const int valid = ids[i] < sentinel;
    const int row = x_by_token ? (valid ? ids[i] / topk : 0) : (valid ? s0 + i : s0);
    x_rd[i] = x_gl + (size_t)row * Kp;
    aux_rd[i] = aux_gl + (size_t)row * aux_stride;
  }
  __global const uchar* w_e = (__global const uchar*)w_gl + (size_t)e * w_stride;
#if WEIGHT_KIND == 3
  __global const void* sc_e = (__global const float*)sc_gl + (size_t)e * g_stride;
  __global const void* z_e = (__global const ushort*)z_gl + (size_t)e * g_stride;
#else
  __global const void* sc_e = (__global const ushort*)sc_gl + (size_t)e * g_stride;
  __global const void* z_e = (__global const uchar*)z_gl + (size_t)e * g_stride;
#endif
  __global const float* sw_e = sw_gl + (size_t)e * sw_stride;

  fvec_t res[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) res[i] = (fvec_t)(0.0f);
  clq_moe_accumulate(n0, w_e, sc_e, z_e, sw_e, gstart_gl, wgroup_gl, Np, block_n, Kp, x_rd, aux_rd, u0, u1, res);
#if MODE == 0
  // SwiGLU: the up projection sits I_offset columns further (I_offset % VEC_COLS == 0).
  fvec_t up[GEMV_M];
  for (int i = 0; i < GEMV_M; ++i) up[i] = (fvec_t)(0.0f);
  clq_moe_accumulate(n0 + I_offset, w_e, sc_e, z_e, sw_e, gstart_gl, wgroup_gl, Np, block_n, Kp, x_rd, aux_rd, u0, u1,
                     up);
#endif
  if (splits > 1) {
    // Raw partial sums; the reduce kernel finishes the epilogue. Row = sorted position.
#if MODE == 0
    const int n_part = 2 * N_out;
#else
    const int n_part = N_out;
#endif
    for (int i = 0; i < GEMV_M; ++i) {
      if (ids[i] >= sentinel) continue;
      float out[VEC_COLS];
      __global float* dst = part_gl + ((size_t)split * S_max + s0 + i) * n_part;
      STORE_F(res[i], out);
      for (int j = 0; j < VEC_COLS; ++j)
        if (n0 + j < N_out) dst[n0 + j] = out[j];
#if MODE == 0
      STORE_F(up[i], out);
      for (int j = 0; j < VEC_COLS; ++j)
        if (n0 + j < N_out) dst[N_out + n0 + j] = out[j];
#endif
    }
    return;
  }
#if MODE == 0
  for (int i = 0; i < GEMV_M; ++i) res[i] = res[i] / ((fvec_t)(1.0f) + exp(-res[i])) * up[i];
#endif
  for (int i = 0; i < GEMV_M; ++i) {
    if (ids[i] >= sentinel) continue;
    float out[VEC_COLS];
#if MODE == 0
    STORE_F(res[i], out);
    __global float* dst = out_gl + (size_t)(s0 + i) * N_out;
#else
    STORE_F(res[i] * topk_w_gl[ids[i]], out);
    __global float* dst = out_gl + (size_t)ids[i] * N_out;
#endif
    for (int j = 0; j < VEC_COLS; ++j)
      if (n0 + j < N_out) dst[n0 + j] = out[j];
  }
}

// Split-K epilogues: sum the partials in split order, then SwiGLU (gate_up) or the routing
// weight (down), exactly what the unsplit kernel does in registers.
__kernel void moe_reduce_gate_up(__global const float* restrict part_gl, __global float* restrict a_gl,
                                 __global const int* restrict sorted_gl, __global const int* restrict npp_gl, int I,
                                 int S_max, int splits, int sentinel) {
  const int n = get_global_id(0), s = get_global_id(1);
  if (n >= I || s >= npp_gl[0] || sorted_gl[s] >= sentinel) return;
  float g = 0.0f, u = 0.0f;
  for (int i = 0; i < splits; ++i) {
    __global const float* p = part_gl + ((size_t)i * S_max + s) * 2 * I;
    g += p[n];
    u += p[I + n];
  }
  a_gl[(size_t)s * I + n] = g / (1.0f + exp(-g)) * u;
}

__kernel void moe_reduce_down(__global const float* restrict part_gl, __global float* restrict y2_gl,
                              __global const int* restrict sorted_gl, __global const int* restrict npp_gl,
                              __global const float* restrict topk_w_gl, int H, int S_max, int splits, int sentinel) {
  const int n = get_global_id(0), s = get_global_id(1);
  if (n >= H || s >= npp_gl[0]) return;
  const int id = sorted_gl[s];
  if (id >= sentinel) return;
  float acc = 0.0f;
  for (int i = 0; i < splits; ++i) acc += part_gl[((size_t)i * S_max + s) * H + n];
  y2_gl[(size_t)id * H + n] = acc * topk_w_gl[id];
}

// out[t][n] = sum_j y2[t*k + j][n] in a fixed order, one rounding.
__kernel void moe_combine(__global const float* restrict y2, __global clq_out_t* restrict out, int T, int K, int H) {
  const int n = get_global_id(0), t = get_global_id(1);
  if (n >= H || t >= T) return;
  float acc = 0.0f;
  for (int j = 0; j < K; ++j) acc += y2[((size_t)t * K + j) * H + n];
  clq_store_out(out, (size_t)t * H + n, acc);
}

// Act-order int4 and int8 experts (GPTQ desc_act): each expert's weight rows were sorted by its own
// g_idx at load, so the activations of a GEMM row are gathered with that row's expert's order
// perm [E][Kp] (w4a16/gather.cl's rule; for int4 its NIBBLE_SCALED layout, which clq_w4_accumulate
// reads, for int8 the plain values clq_w8_accumulate reads, which takes its own sums):
//   by_sorted 0 (gate_up): row a = t*k + j of the routing, expert ids[a], source row x[a / k]
//   by_sorted 1 (down):    row s = sorted position, expert expert_ids[s / MOE_BS], source a[s]
// Rows the GEMM never reads (past num_post_padded, or a block of a non-local expert) are skipped.
// One work-item per word (8 packed rows) of one row.
__kernel void moe_gather_act_order(__global const clq_in_t* restrict src,  // [rows or T][K]
                                   __global const int* restrict perm,      // [E][Kp]
                                   __global const int* restrict ids,       // [T*k] expert of each assignment
                                   __global const int* restrict expert_ids_gl, __global const int* restrict npp_gl,
                                   __global float* restrict xp,            // [rows][Kp]
                                   __global float* restrict xw,            // [rows][Kp/8]
                                   int rows, int K, int Kp, int topk, int by_sorted) {
  const int w = get_global_id(0);
  const int r = get_global_id(1);
  if (w >= Kp / 8 || r >= rows) return;
  int e, src_row;
  if (by_sorted) {
    if (r >= npp_gl[0]) return;
    e = expert_ids_gl[r / MOE_BS];
    src_row = r;
  } else {
    e = ids[r];
    src_row = r / topk;
  }
  if (e < 0) return;
  __global const int* p = perm + (size_t)e * Kp + (size_t)w * 8;
  float v[8];
  float sum = 0.0f;
  for (int i = 0; i < 8; ++i) {
    const int k = p[i];
    v[i] = k < 0 ? 0.0f : clq_load_in(src, (size_t)src_row * K + k);
    sum += v[i];
  }
#if WEIGHT_KIND == 3
  vstore8(vload8(0, v), w, xp + (size_t)r * Kp);
#else
  const float8 scale = (float8)(1.0f, 0x1.0p-4f, 0x1.0p-8f, 0x1.0p-12f, 0x1.0p-16f, 0x1.0p-20f, 0x1.0p-24f, 0x1.0p-24f);
  vstore8(vload8(0, v) * scale, w, xp + (size_t)r * Kp);
  xw[(size_t)r * (Kp / 8) + w] = sum;
#endif
}
