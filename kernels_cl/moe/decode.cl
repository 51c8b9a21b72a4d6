// Fused MoE decode path (few tokens: T * k slots spread over the experts), two GEMM launches
// that stream each routed expert's weights once with many bytes in flight and finish their own
// reductions, so the layer is four launches with no host round trip:
//
//   moe_route_stage   router logits (one work-group per (expert, token), a tree sum) and, for
//                     FP8 experts, the per-token per-128 activation quantization of x
//   moe_topk_align    (moe/topk.cl) top-k and the alignment in one work-group
//   moe_decode_gate_up  a[s] = silu(x W_gate) * (x W_up), FP8: a quantized per 128 as well
//   moe_decode_down     y2[id] = w_id * (a[s] W_down), and the combine out[t] = sum_j y2[t*k+j]
//
// Work split of both GEMMs: a work-group of DEC_CT column work-items x DEC_KS K slices; each
// column work-item owns 4 adjacent columns and every row of its aligned block (MOE_BS rows, all
// in registers, so the weights are read once per block). The slices of a group are summed in
// local memory; dimension 1 splits K across work-groups when the tiles alone leave the device
// idle. Split partials go to a scratch buffer and the last work-group of a tile to finish
// (an atomic counter, reset by that work-group for the next call) adds them in split order:
// the result does not depend on which group finishes last. The down kernel's combine works the
// same way one level up: the last slot of a token to finish a tile sums the token's k rows in
// order j = 0..k-1.
//
// Weights: the layouts of moe/general.cl (K-major column blocks, one expert after another);
// WEIGHT_KIND 0 = fp16/bf16 rows, 2 = e4m3 words of 4 K values with 128x128 block scales.
// Activations of FP8 experts are staged as their e4m3 values in fp32 (unscaled) next to one
// scale per row and 128 columns, and each 128-block sum of code products is scaled once,
// sum * s_a * S_w, as SPEC section 4 writes it and moe/general.cl computes it. Products of two
// e4m3 values are exact in fp32 and their block sums nearly so; pre-multiplying the codes by
// s_a (as this path once did) rounds every product and made `a` several ulp less accurate,
// enough to move a value across an e4m3 rounding midpoint in the down GEMM's quantization.
#include "common/act_io.clh"
#include "common/fp8_vec.clh"

#ifndef WEIGHT_KIND
#define WEIGHT_KIND 0
#endif
#ifndef DENSE_BF16
#define DENSE_BF16 0
#endif
#ifndef MOE_BS
#define MOE_BS 1
#endif
#define DEC_CT 64  // column work-items per group (4 columns each)
#define DEC_KS 4   // K slices per group
#define DEC_WG (DEC_CT * DEC_KS)
#define FP8_GROUP 128
#define E4M3_MAX 448.0f

inline float4 clq_dec_w16(ushort4 h) {
#if DENSE_BF16
  return as_float4(convert_uint4(h) << 16);
#else
  return (float4)(clq_fp16_to_f32(h.s0), clq_fp16_to_f32(h.s1), clq_fp16_to_f32(h.s2), clq_fp16_to_f32(h.s3));
#endif
}

// Four consecutive activations of a row starting at element i (i % 4 == 0).
inline float4 clq_load_in4(__global const clq_in_t* p, size_t i) {
#if IN_DTYPE == 0
  return vload4(0, p + i);
#elif IN_DTYPE == 1
  const ushort4 h = vload4(0, p + i);
  return (float4)(clq_fp16_to_f32(h.s0), clq_fp16_to_f32(h.s1), clq_fp16_to_f32(h.s2), clq_fp16_to_f32(h.s3));
#else
  return as_float4(convert_uint4(vload4(0, p + i)) << 16);
#endif
}

// e4m3 value of v / s in fp32 (fp8/quant.cl's rule: fp32 division, clamp, round to nearest
// even); NaN stays NaN.
inline float clq_dec_quant(float v, float s) {
  const float r = v / s;
  return isnan(r) ? as_float(0x7FC00000u) : clq_e4m3_to_f32(clq_f32_to_e4m3(clamp(r, -E4M3_MAX, E4M3_MAX)));
}

// ---- launch 1: router logits and FP8 activation staging ---------------------------------------
// Groups 0..n_logit-1 of dimension 0: logits[t][e] = x[t] . w_r[e] (fp32, tree sum over 64 lanes);
// groups n_logit.. : 128-column group j = g - n_logit of token t quantized (fp8/quant.cl's rule),
// its e4m3 values written into xq [T][Kb*128] (padding 0) and its scale into xs [T][Kb].
#define RS_WG 64
__kernel __attribute__((reqd_work_group_size(RS_WG, 1, 1)))
void moe_route_stage(__global const clq_in_t* restrict x, __global const float* restrict wr,
                     __global float* restrict logits, int n_logit, __global float* restrict xq,
                     __global float* restrict xs, int T, int H, int E, int Kb) {
  __local float red[RS_WG];
  __local int nan_sh[RS_WG];
  const int g = get_group_id(0), t = get_group_id(1), l = get_local_id(0);
  if (g < n_logit) {
    const int e = g;
    float acc = 0.0f;
    for (int h = l; h < H; h += RS_WG) acc = fma(clq_load_in(x, (size_t)t * H + h), wr[(size_t)e * H + h], acc);
    red[l] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = RS_WG / 2; s > 0; s >>= 1) {
      if (l < s) red[l] += red[l + s];
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) logits[(size_t)t * E + e] = red[0];
    return;
  }
  const int j = g - n_logit;
  if (j >= Kb) return;
  const int k0 = j * FP8_GROUP, k1 = min(H, k0 + FP8_GROUP);
  float v[FP8_GROUP / RS_WG];
  float amax = 0.0f;
  int nan = 0;
  for (int i = 0; i < FP8_GROUP / RS_WG; ++i) {
    const int k = k0 + l + i * RS_WG;
    v[i] = k < k1 ? clq_load_in(x, (size_t)t * H + k) : 0.0f;
    nan |= isnan(v[i]);
    amax = fmax(amax, fabs(v[i]));
  }
  red[l] = amax;
  nan_sh[l] = nan;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = RS_WG / 2; s > 0; s >>= 1) {
    if (l < s) {
      red[l] = fmax(red[l], red[l + s]);
      nan_sh[l] |= nan_sh[l + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float sc = nan_sh[0] ? as_float(0x7FC00000u) : fmax(red[0], 1e-10f) / E4M3_MAX;
  if (l == 0) xs[(size_t)t * Kb + j] = sc;
  for (int i = 0; i < FP8_GROUP / RS_WG; ++i) {
    const int k = k0 + l + i * RS_WG;
    xq[(size_t)t * Kb * FP8_GROUP + k] = k < k1 ? clq_dec_quant(v[i], sc) : 0.0f;
  }
}

// ---- the GEMM core ------------------------------------------------------------------------------
// acc[r] += rows r of the activations . W[:, n .. n+4) over this slice's share of K units
// [u0, u1) (dense: quads of 4 rows; e4m3: 128-row blocks, each block's sum of code products
// times the row's activation scale sa_rd[r][j] and the weight block scale).
// x_rd[r]: row r's activations, fp32 (or the input type for the dense gate_up, X_IN = 1).
#if WEIGHT_KIND == 2
typedef __global const float* clq_xrow_t;
#else
typedef __global const void* clq_xrow_t;
#endif
#ifndef X_IN
#define X_IN 0  // 1: the dense gate_up reads x in the input type
#endif

#if WEIGHT_KIND == 2
inline void clq_dec_accumulate(__global const uint* w_e, int block_n, int Kp, int n, __global const float* sw_e,
                               clq_xrow_t* x_rd, clq_xrow_t* sa_rd, int u0, int u1, int ks, float4* acc) {
  __global const uint4* q = (__global const uint4*)(w_e + (size_t)(n / block_n) * (Kp / 4) * block_n + n % block_n);
  const int qs = block_n / 4;  // uint4 per word row
  __global const float* sw = sw_e + (size_t)(n / 128) * (Kp / 128);
  for (int j = u0; j < u1; ++j) {
    float4 blk[MOE_BS];
    for (int r = 0; r < MOE_BS; ++r) blk[r] = (float4)(0.0f);
    uint4 wq[32 / DEC_KS];
    for (int i = 0; i < 32 / DEC_KS; ++i) wq[i] = q[(size_t)(j * 32 + ks + i * DEC_KS) * qs];
    for (int i = 0; i < 32 / DEC_KS; ++i) {
      const int w = j * 32 + ks + i * DEC_KS;
      float4 d0, d1, d2, d3;
      clq_e4m3_word(wq[i], &d0, &d1, &d2, &d3);
      for (int r = 0; r < MOE_BS; ++r) {
        const float4 xv = vload4(w, x_rd[r]);
        blk[r] = fma((float4)(xv.s0), d0, blk[r]);
        blk[r] = fma((float4)(xv.s1), d1, blk[r]);
        blk[r] = fma((float4)(xv.s2), d2, blk[r]);
        blk[r] = fma((float4)(xv.s3), d3, blk[r]);
      }
    }
    const float s = sw[j];
    for (int r = 0; r < MOE_BS; ++r) acc[r] += blk[r] * sa_rd[r][j] * s;
  }
}
#else
#define DEC_UNROLL 4
inline void clq_dec_accumulate(__global const ushort* w_e, int block_n, int Kp, int n, __global const float* sw_e,
                               clq_xrow_t* x_rd, clq_xrow_t* sa_rd, int u0, int u1, int ks, float4* acc) {
  __global const ushort4* q = (__global const ushort4*)(w_e + (size_t)(n / block_n) * Kp * block_n + n % block_n);
  const int qs = block_n / 4;
  int u = u0 + ks;
  for (; u + (DEC_UNROLL - 1) * DEC_KS < u1; u += DEC_UNROLL * DEC_KS) {
    ushort4 wv[DEC_UNROLL][4];
    for (int i = 0; i < DEC_UNROLL; ++i)
      for (int c = 0; c < 4; ++c) wv[i][c] = q[(size_t)((u + i * DEC_KS) * 4 + c) * qs];
    for (int i = 0; i < DEC_UNROLL; ++i) {
      const int k = (u + i * DEC_KS) * 4;
      const float4 w0 = clq_dec_w16(wv[i][0]), w1 = clq_dec_w16(wv[i][1]), w2 = clq_dec_w16(wv[i][2]),
                   w3 = clq_dec_w16(wv[i][3]);
      for (int r = 0; r < MOE_BS; ++r) {
#if X_IN
        const float4 xv = clq_load_in4((__global const clq_in_t*)x_rd[r], k);
#else
        const float4 xv = vload4(0, (__global const float*)x_rd[r] + k);
#endif
        acc[r] = fma((float4)(xv.s0), w0, acc[r]);
        acc[r] = fma((float4)(xv.s1), w1, acc[r]);
        acc[r] = fma((float4)(xv.s2), w2, acc[r]);
        acc[r] = fma((float4)(xv.s3), w3, acc[r]);
      }
    }
  }
  for (; u < u1; u += DEC_KS) {
    const int k = u * 4;
    float4 w[4];
    for (int c = 0; c < 4; ++c) w[c] = clq_dec_w16(q[(size_t)(k + c) * qs]);
    for (int r = 0; r < MOE_BS; ++r) {
#if X_IN
      const float4 xv = clq_load_in4((__global const clq_in_t*)x_rd[r], k);
#else
      const float4 xv = vload4(0, (__global const float*)x_rd[r] + k);
#endif
      acc[r] = fma((float4)(xv.s0), w[0], acc[r]);
      acc[r] = fma((float4)(xv.s1), w[1], acc[r]);
      acc[r] = fma((float4)(xv.s2), w[2], acc[r]);
      acc[r] = fma((float4)(xv.s3), w[3], acc[r]);
    }
  }
}
#endif

// Sums the DEC_KS slices of acc[] (one row at a time through local memory) into the ks == 0
// work-items' acc[].
inline void clq_dec_reduce_slices(float4* acc, __local float4* sh, int c, int ks) {
  for (int r = 0; r < MOE_BS; ++r) {
    sh[ks * DEC_CT + c] = acc[r];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ks == 0)
      for (int i = 1; i < DEC_KS; ++i) acc[r] += sh[i * DEC_CT + c];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}

// Split-K hand-over: every split stores its rows to part [split][row][cols]; returns 1 in the
// last group of this tile to arrive, which then holds the split-ordered sum in acc[]. Every
// work-item of the group passes every barrier here (no exits before a barrier: PoCL and the
// OpenCL rules want barriers reached by the whole group), `active` says whether the group has
// a block to work on; with one split the group is its own last.
inline int clq_dec_last_split(float4* acc, int ks, int active, __global float* part, size_t split_stride,
                              size_t row_stride, int col, int valid, int split, int splits,
                              __global volatile int* counter, __local int* flag) {
  const int many = splits > 1;  // one split: the group is its own last, nothing to store or add
  if (many && active && ks == 0 && valid)
    for (int r = 0; r < MOE_BS; ++r) vstore4(acc[r], 0, part + split * split_stride + r * row_stride + col);
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
  if (get_local_id(0) == 0) {
    int last = active && !many;
    if (active && many) {
      const int done = atomic_inc(counter);
      last = done == splits - 1;
      if (last) *counter = 0;  // ready for the next call
    }
    *flag = last;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int fin = *flag;
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  if (many && fin && ks == 0 && valid)
    for (int r = 0; r < MOE_BS; ++r) {
      float4 s = (float4)(0.0f);
      for (int i = 0; i < splits; ++i) {
        __global volatile float* p = part + i * split_stride + r * row_stride + col;
        s += (float4)(p[0], p[1], p[2], p[3]);
      }
      acc[r] = s;
    }
  return fin;
}

// ---- launch 3: gate_up with SwiGLU ----------------------------------------------------------------
// Group (tile, split, block): 128 a-columns [128*tile, +128): work-items c < 32 compute the gate
// columns, c >= 32 the up columns I further. FP8 experts: the finished 128 a-values of a row
// are one activation group of the down GEMM, quantized here (fp8/quant.cl's rule): e4m3 values
// into a, the group's scale into a_scale [S_max][I/128].
#define DEC_SH (DEC_WG > MOE_BS * 32 ? DEC_WG : MOE_BS * 32)
__kernel __attribute__((reqd_work_group_size(DEC_WG, 1, 1)))
void moe_decode_gate_up(__global const void* restrict w_gl, long w_stride, __global const float* restrict sw_gl,
                        long sw_stride, __global const void* restrict x_gl,  // [T][H] input dtype, or xq [T][Kp]
                        __global const float* restrict xs_gl,                // FP8: x scales [T][Kp/128]
                        __global const int* restrict sorted_gl, __global const int* restrict expert_ids_gl,
                        __global const int* restrict npp_gl, __global float* restrict a_gl,  // [S_max][I]
                        __global float* restrict as_gl,                      // FP8: a scales [S_max][I/128]
                        int I, int x_stride, int block_n, int Kp, int topk, int sentinel, int units, int per_split,
                        __global float* restrict part_gl, __global int* restrict counters, int S_max) {
  __local float4 sh[DEC_SH];
  __local int flag;
  __local float amax_sh[MOE_BS];
  const int lid = get_local_id(0), c = lid % DEC_CT, ks = lid / DEC_CT;
  const int tile = get_group_id(0), split = get_group_id(1), splits = get_num_groups(1), b = get_group_id(2);
  const int s0 = b * MOE_BS;
  const int e_raw = s0 < npp_gl[0] ? expert_ids_gl[b] : -1;
  const int active = e_raw >= 0;  // the same in the whole group
  const int e = active ? e_raw : 0;
  const int upper = c / (DEC_CT / 2);
  const int col = tile * 128 + (c % (DEC_CT / 2)) * 4;  // a-column
  const int n = col + upper * I;                           // weight column (gate or up)
  const int u0 = split * per_split, u1 = min(units, u0 + per_split);
  int ids[MOE_BS];
  clq_xrow_t x_rd[MOE_BS];
  clq_xrow_t sa_rd[MOE_BS];
  for (int r = 0; r < MOE_BS; ++r) {
    ids[r] = active ? sorted_gl[s0 + r] : sentinel;
    const int row = ids[r] < sentinel ? ids[r] / topk : 0;
#if WEIGHT_KIND == 2
    x_rd[r] = (__global const float*)x_gl + (size_t)row * x_stride;  // xq rows, Kb * 128 long
    sa_rd[r] = xs_gl + (size_t)row * (x_stride / FP8_GROUP);
#else
    sa_rd[r] = xs_gl;  // unused
    x_rd[r] = (__global const void*)((__global const clq_in_t*)x_gl + (size_t)row * x_stride);  // H long
#endif
  }
  float4 acc[MOE_BS];
  for (int r = 0; r < MOE_BS; ++r) acc[r] = (float4)(0.0f);
  if (active && col < I)
    clq_dec_accumulate((__global const void*)((__global const uchar*)w_gl + (size_t)e * w_stride), block_n, Kp, n,
                       sw_gl + (size_t)e * sw_stride, x_rd, sa_rd, u0, u1, ks, acc);
  clq_dec_reduce_slices(acc, sh, c, ks);
  const size_t row_stride = 2 * (size_t)I;
  const int fin = clq_dec_last_split(acc, ks, active, part_gl + (size_t)s0 * row_stride, (size_t)S_max * row_stride,
                                     row_stride, col + upper * I, col < I, split, splits,
                                     counters + (size_t)b * get_num_groups(0) + tile, &flag);
  // gate (c < 32) and up (c >= 32) meet in local memory; the gate work-items finish.
  if (fin && ks == 0 && upper == 1)
    for (int r = 0; r < MOE_BS; ++r) sh[r * (DEC_CT / 2) + c - DEC_CT / 2] = acc[r];
  barrier(CLK_LOCAL_MEM_FENCE);
  float4 av[MOE_BS];
  for (int r = 0; r < MOE_BS; ++r) av[r] = (float4)(0.0f);
  if (fin && ks == 0 && upper == 0)
    for (int r = 0; r < MOE_BS; ++r) {
      const float4 g = acc[r], u = sh[r * (DEC_CT / 2) + c];
      av[r] = g / ((float4)(1.0f) + exp(-g)) * u;
    }
#if WEIGHT_KIND == 2
  // Per row: amax over the tile's 128 values (32 work-items x 4), then quantize.
  barrier(CLK_LOCAL_MEM_FENCE);
  __local float* red = (__local float*)sh;  // [MOE_BS][32] maxima, [MOE_BS][32] NaN flags after
  if (ks == 0 && upper == 0)
    for (int r = 0; r < MOE_BS; ++r) {
      const float4 m4 = fabs(av[r]);
      const int nan4 = isnan(av[r].s0) | isnan(av[r].s1) | isnan(av[r].s2) | isnan(av[r].s3);
      red[r * 32 + c] = col < I ? fmax(fmax(m4.s0, m4.s1), fmax(m4.s2, m4.s3)) : 0.0f;
      red[MOE_BS * 32 + r * 32 + c] = col < I ? (float)nan4 : 0.0f;
    }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid < MOE_BS) {
    float m = 0.0f, nn = 0.0f;
    for (int i = 0; i < 32; ++i) {
      m = fmax(m, red[lid * 32 + i]);
      nn = fmax(nn, red[MOE_BS * 32 + lid * 32 + i]);
    }
    amax_sh[lid] = nn > 0.0f ? as_float(0x7FC00000u) : fmax(m, 1e-10f) / E4M3_MAX;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
#endif
  if (!fin || ks != 0 || upper != 0 || col >= I) return;
  for (int r = 0; r < MOE_BS; ++r) {
    if (ids[r] >= sentinel) continue;
    float4 v = av[r];
#if WEIGHT_KIND == 2
    const float sc = amax_sh[r];
    if (c == 0) as_gl[(size_t)(s0 + r) * (I / FP8_GROUP) + tile] = sc;
    v = (float4)(clq_dec_quant(v.s0, sc), clq_dec_quant(v.s1, sc), clq_dec_quant(v.s2, sc), clq_dec_quant(v.s3, sc));
#endif
    vstore4(v, 0, a_gl + (size_t)(s0 + r) * I + col);
  }
}

// ---- launch 4: down with the routing weight, and the combine ---------------------------------------
// Group (tile, split, block): 256 output columns. y2 [T*k][H] fp32 holds each slot's weighted
// row; tok_cnt [T][tiles] counts the slots of a token done with a tile.
__kernel __attribute__((reqd_work_group_size(DEC_WG, 1, 1)))
void moe_decode_down(__global const void* restrict w_gl, long w_stride, __global const float* restrict sw_gl,
                     long sw_stride, __global const float* restrict a_gl,  // [S_max][I]
                     __global const float* restrict as_gl,                 // FP8: a scales [S_max][I/128]
                     __global const int* restrict sorted_gl, __global const int* restrict expert_ids_gl,
                     __global const int* restrict npp_gl, __global const float* restrict topk_w_gl,
                     __global float* restrict y2_gl, __global clq_out_t* restrict out_gl, int H, int a_stride,
                     int block_n, int Kp, int topk, int sentinel, int units, int per_split,
                     __global float* restrict part_gl, __global int* restrict counters, __global int* restrict tok_cnt,
                     int S_max) {
  __local float4 sh[DEC_WG];
  __local int flag;
  __local int finish_tok[MOE_BS];
  const int lid = get_local_id(0), c = lid % DEC_CT, ks = lid / DEC_CT;
  const int tile = get_group_id(0), split = get_group_id(1), splits = get_num_groups(1), b = get_group_id(2);
  const int tiles = get_num_groups(0);
  const int s0 = b * MOE_BS;
  const int e_raw = s0 < npp_gl[0] ? expert_ids_gl[b] : -1;
  const int active = e_raw >= 0;
  const int e = active ? e_raw : 0;
  const int n = tile * (DEC_CT * 4) + c * 4;
  const int u0 = split * per_split, u1 = min(units, u0 + per_split);
  int ids[MOE_BS];
  clq_xrow_t x_rd[MOE_BS];
  clq_xrow_t sa_rd[MOE_BS];
  for (int r = 0; r < MOE_BS; ++r) {
    ids[r] = active ? sorted_gl[s0 + r] : sentinel;
    const size_t row = (size_t)(active ? s0 + r : 0);  // padding rows: never stored
    x_rd[r] = a_gl + row * a_stride;
    sa_rd[r] = as_gl + row * (a_stride / FP8_GROUP);  // FP8 only (a_stride = I, a multiple of 128)
  }
  float4 acc[MOE_BS];
  for (int r = 0; r < MOE_BS; ++r) acc[r] = (float4)(0.0f);
  if (active && n < H)
    clq_dec_accumulate((__global const void*)((__global const uchar*)w_gl + (size_t)e * w_stride), block_n, Kp, n,
                       sw_gl + (size_t)e * sw_stride, x_rd, sa_rd, u0, u1, ks, acc);
  clq_dec_reduce_slices(acc, sh, c, ks);
  const int fin = clq_dec_last_split(acc, ks, active, part_gl + (size_t)s0 * H, (size_t)S_max * H, (size_t)H, n,
                                     n < H, split, splits, counters + (size_t)b * tiles + tile, &flag);
  if (fin && ks == 0 && n < H)
    for (int r = 0; r < MOE_BS; ++r)
      if (ids[r] < sentinel) vstore4(acc[r] * topk_w_gl[ids[r]], 0, y2_gl + (size_t)ids[r] * H + n);
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
  if (lid < MOE_BS) {
    int ft = -1;
    if (fin && ids[lid] < sentinel) {
      const int t = ids[lid] / topk;
      __global volatile int* tc = (__global volatile int*)tok_cnt + (size_t)t * tiles + tile;
      if (atomic_inc(tc) == topk - 1) {
        *tc = 0;
        ft = t;
      }
    }
    finish_tok[lid] = ft;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  if (!fin || ks != 0 || n >= H) return;
  for (int r = 0; r < MOE_BS; ++r) {
    const int t = finish_tok[r];
    if (t < 0) continue;
    float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < topk; ++j) {
      __global volatile float* p = y2_gl + ((size_t)t * topk + j) * H + n;
      for (int i = 0; i < 4; ++i) o[i] += p[i];
    }
    for (int i = 0; i < 4; ++i)
      if (n + i < H) clq_store_out(out_gl, (size_t)t * H + n + i, o[i]);
  }
}
