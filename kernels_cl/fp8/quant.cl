// FP8 activation quantization (SPEC section 4), on the device before the GEMM.
//
//   per token m and 128-column group j (the ragged last group uses only the columns that exist):
//     amax = max |x[m][128j .. 128j+127]|, clamped below at 1e-10
//     s    = amax / 448                       (fp32, correctly rounded where the device allows)
//     q    = e4m3(clamp(x / s, -448, 448))    (round to nearest even)
//
// Inf/NaN: a group holding NaN gets s = NaN and NaN codes; a group holding +-Inf (and no NaN)
// gets s = Inf, so its finite values become 0 and its infinities NaN. Either way every output of
// that token is NaN, never a silently wrong number. Host twin: host/ops/fp8/fp8_gemm.cpp.
//
// Outputs: codes [M][K] (what `clquant quant-fp8` writes), scales [M][Kb], and for the GEMM the
// decoded codes as fp32 xq [M][Kp] (Kp = Kb * 128, padding zeroed). With CODES_PADDED (for the
// tensor-core GEMMs, which read the codes themselves) xq is not written: at M = 4096, K = 16384
// it was 268 MB of stores no kernel read.
#include "common/act_io.clh"

#define FP8_GROUP 128
#define E4M3_MAX 448.0f
#ifndef CODES_PADDED
#define CODES_PADDED 0  // 1: codes rows are Kp long with +0 padding (the mma variants' A operand), no xq
#endif
#if CODES_PADDED
#define CODE_AT(m, k) ((size_t)(m) * Kb * FP8_GROUP + (k))
#else
#define CODE_AT(m, k) ((size_t)(m) * K + (k))
#endif

#ifndef SCALE_UE8M0
#define SCALE_UE8M0 0  // 1: scales rounded up to a power of two (ue8m0, DeepSeek-V3.1 scale_fmt)
#endif

inline float clq_group_scale(float amax, int has_nan) {
  if (has_nan) return as_float(0x7FC00000u);
  const float s = fmax(amax, 1e-10f) / E4M3_MAX;
#if SCALE_UE8M0
  // Up to the next power of two: any mantissa bit carries into the exponent (s is normal and
  // at most 2^127 here, so the result stays finite; an infinite s stays infinite).
  return as_float((as_uint(s) + 0x007FFFFFu) & 0xFF800000u);
#else
  return s;
#endif
}

inline uchar clq_quant_e4m3(float v, float s) {
  const float r = v / s;
  if (isnan(r)) return (uchar)0x7Fu;
  return clq_f32_to_e4m3(clamp(r, -E4M3_MAX, E4M3_MAX));
}

// amax |x| over group j of row m (ragged last group: only the columns that exist); NaN noted.
inline float clq_group_amax(__global const clq_in_t* x, int m, int K, int j, int* has_nan) {
  const int k0 = j * FP8_GROUP, k1 = min(K, k0 + FP8_GROUP);
  float amax = 0.0f;
  int nan = 0;
  for (int k = k0; k < k1; ++k) {
    const float v = clq_load_in(x, (size_t)m * K + k);
    nan |= isnan(v);
    amax = fmax(amax, fabs(v));
  }
  *has_nan = nan;
  return amax;
}

// Quantizes group j of row m with scale s: codes, and the decoded fp32 GEMM operand padded to
// whole groups with zeros (and +0 codes when CODES_PADDED).
inline void clq_quant_group(__global const clq_in_t* x, float s, __global uchar* codes, __global float* xq, int m,
                            int K, int Kb, int j) {
  const int k0 = j * FP8_GROUP, k1 = min(K, k0 + FP8_GROUP);
  const size_t Kp = (size_t)Kb * FP8_GROUP;
  for (int k = k0; k < k1; ++k) {
    const uchar q = clq_quant_e4m3(clq_load_in(x, (size_t)m * K + k), s);
    codes[CODE_AT(m, k)] = q;
#if !CODES_PADDED
    xq[(size_t)m * Kp + k] = clq_e4m3_to_f32(q);
#endif
  }
  for (int k = k1; k < k0 + FP8_GROUP; ++k) {
#if CODES_PADDED
    codes[CODE_AT(m, k)] = 0;
#else
    xq[(size_t)m * Kp + k] = 0.0f;
#endif
  }
}

// One work-item per (group j, token m): amax over the group, then quantize it.
__kernel void fp8_quant_group(__global const clq_in_t* restrict x,  // [M][K]
                              __global uchar* restrict codes,       // [M][K]
                              __global float* restrict scales,      // [M][Kb]
                              __global float* restrict xq,          // [M][Kp]
                              int M, int K, int Kb) {
  const int j = get_global_id(0), m = get_global_id(1);
  if (j >= Kb || m >= M) return;
  int has_nan;
  const float amax = clq_group_amax(x, m, K, j, &has_nan);
  const float s = clq_group_scale(amax, has_nan);
  scales[(size_t)m * Kb + j] = s;
  clq_quant_group(x, s, codes, xq, m, K, Kb, j);
}

// The same three steps with a work-group of 128 per (group j, token m), one column per
// work-item: the group's max comes from a local-memory tree (max is exact, so the bits are those
// of the one-work-item kernels), and the loads and stores are coalesced.
#define QWG FP8_GROUP
inline float clq_wg_amax(float v, __local float* red, __local int* nan_sh, int l, int* has_nan) {
  red[l] = fabs(v);
  nan_sh[l] = isnan(v);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = QWG / 2; s > 0; s >>= 1) {
    if (l < s) {
      red[l] = fmax(red[l], red[l + s]);  // fmax drops a NaN operand; nan_sh keeps the fact
      nan_sh[l] |= nan_sh[l + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  *has_nan = nan_sh[0];
  return red[0];
}

inline void clq_wg_quant(float v, float s, __global uchar* codes, __global float* xq, int m, int K, int Kb, int k) {
  const size_t Kp = (size_t)Kb * FP8_GROUP;
  if (k < K) {
    const uchar q = clq_quant_e4m3(v, s);
    codes[CODE_AT(m, k)] = q;
#if !CODES_PADDED
    xq[(size_t)m * Kp + k] = clq_e4m3_to_f32(q);
#endif
  } else {
#if CODES_PADDED
    codes[CODE_AT(m, k)] = 0;
#else
    xq[(size_t)m * Kp + k] = 0.0f;
#endif
  }
}

__kernel __attribute__((reqd_work_group_size(QWG, 1, 1)))
void fp8_quant_group_wg(__global const clq_in_t* restrict x, __global uchar* restrict codes,
                        __global float* restrict scales, __global float* restrict xq, int M, int K, int Kb) {
  __local float red[QWG];
  __local int nan_sh[QWG];
  const int j = get_group_id(0), m = get_group_id(1), l = get_local_id(0), k = j * FP8_GROUP + l;
  const float v = k < K ? clq_load_in(x, (size_t)m * K + k) : 0.0f;
  int has_nan;
  const float amax = clq_wg_amax(v, red, nan_sh, l, &has_nan);
  const float s = clq_group_scale(amax, has_nan);
  if (l == 0) scales[(size_t)m * Kb + j] = s;
  clq_wg_quant(v, s, codes, xq, m, K, Kb, k);
}

// Per-token-group (block) mode for prefill-sized M: a work-group of 128 takes 8 groups of one
// row, eight consecutive columns per work-item, so there are 16 times fewer work-groups than
// fp8_quant_group_wg and one barrier instead of seven (at M = 4096, K = 16384 that kernel's
// half a million work-groups took 490 us on the H200, ten times the memory time). Each
// work-item takes the max over its group's 16 partial maxima itself; max is exact, so the bits
// are those of the other kernels.
#ifndef QROW_VEC
#define QROW_VEC 0  // 1: K is a multiple of 8, so every work-item's 8 columns are aligned for vector access
#endif
#define QROW_GROUPS 8
#define QROW_COLS 8  // columns per work-item: FP8_GROUP / QROW_COLS work-items per group
__kernel __attribute__((reqd_work_group_size(QWG, 1, 1)))
void fp8_quant_group_rows(__global const clq_in_t* restrict x, __global uchar* restrict codes,
                          __global float* restrict scales, __global float* restrict xq, int M, int K, int Kb) {
  __local float red[QWG];
  __local int nan_sh[QWG];
  const int l = get_local_id(0), m = get_group_id(1);
  const int per = FP8_GROUP / QROW_COLS;  // work-items per group
  const int j = get_group_id(0) * QROW_GROUPS + l / per;
  const int k0 = j * FP8_GROUP + (l % per) * QROW_COLS;
  float v[QROW_COLS];
  float amax = 0.0f;
  int nan = 0;
  // Rows of a multiple of 8 columns: the work-item's 8 values in one vector load (16 or 32 bytes)
  // instead of eight scalar ones; the last partial group and odd K take the scalar loop.
  const bool whole = QROW_VEC && j < Kb && k0 + QROW_COLS <= K;
  if (whole) clq_load_in8(x, (size_t)m * K + k0, v);
#pragma unroll
  for (int e = 0; e < QROW_COLS; ++e) {
    const int k = k0 + e;
    if (!whole) v[e] = (j < Kb && k < K) ? clq_load_in(x, (size_t)m * K + k) : 0.0f;
    nan |= isnan(v[e]);
    amax = fmax(amax, fabs(v[e]));  // fmax drops a NaN operand; nan keeps the fact
  }
  red[l] = amax;
  nan_sh[l] = nan;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (j >= Kb) return;  // after the barrier: every work-item reaches it
  const int first = (l / per) * per;
  amax = 0.0f;
  nan = 0;
  for (int i = 0; i < per; ++i) {
    amax = fmax(amax, red[first + i]);
    nan |= nan_sh[first + i];
  }
  const float s = clq_group_scale(amax, nan);
  if (l == first) scales[(size_t)m * Kb + j] = s;
#if CODES_PADDED
  // Padded rows (Kp bytes, a multiple of 128): the 8 codes, padding zeros included, in one
  // 8-byte store.
  if (QROW_VEC) {
    uint lo = 0u, hi = 0u;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      lo |= (k0 + e < K ? (uint)clq_quant_e4m3(v[e], s) : 0u) << (8 * e);
      hi |= (k0 + 4 + e < K ? (uint)clq_quant_e4m3(v[4 + e], s) : 0u) << (8 * e);
    }
    *(__global uint2*)(codes + CODE_AT(m, k0)) = (uint2)(lo, hi);
    return;
  }
#endif
#pragma unroll
  for (int e = 0; e < QROW_COLS; ++e) clq_wg_quant(v[e], s, codes, xq, m, K, Kb, k0 + e);
}

__kernel __attribute__((reqd_work_group_size(QWG, 1, 1)))
void fp8_group_amax_wg(__global const clq_in_t* restrict x, __global float* restrict amax_out, int M, int K, int Kb) {
  __local float red[QWG];
  __local int nan_sh[QWG];
  const int j = get_group_id(0), m = get_group_id(1), l = get_local_id(0), k = j * FP8_GROUP + l;
  const float v = k < K ? clq_load_in(x, (size_t)m * K + k) : 0.0f;
  int has_nan;
  const float amax = clq_wg_amax(v, red, nan_sh, l, &has_nan);
  if (l == 0) amax_out[(size_t)m * Kb + j] = has_nan ? as_float(0x7FC00000u) : amax;
}

__kernel __attribute__((reqd_work_group_size(QWG, 1, 1)))
void fp8_quant_tensor_wg(__global const clq_in_t* restrict x, __global const float* restrict scale_in,
                         __global uchar* restrict codes, __global float* restrict scales,
                         __global float* restrict xq, int M, int K, int Kb, int per_row) {
  const int j = get_group_id(0), m = get_group_id(1), l = get_local_id(0), k = j * FP8_GROUP + l;
  const float s = scale_in[per_row ? m : 0];
  if (l == 0) scales[(size_t)m * Kb + j] = s;
  clq_wg_quant(k < K ? clq_load_in(x, (size_t)m * K + k) : 0.0f, s, codes, xq, m, K, Kb, k);
}

// Per-tensor dynamic scale, pass 1: amax of each (group, token), NaN recorded as NaN.
__kernel void fp8_group_amax(__global const clq_in_t* restrict x, __global float* restrict amax_out, int M, int K,
                             int Kb) {
  const int j = get_global_id(0), m = get_global_id(1);
  if (j >= Kb || m >= M) return;
  int has_nan;
  const float amax = clq_group_amax(x, m, K, j, &has_nan);
  amax_out[(size_t)m * Kb + j] = has_nan ? as_float(0x7FC00000u) : amax;
}

// Pass 2: one work-group folds every partial amax into the tensor's scale (scale_out[0]).
#define REDUCE_WG 256
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void fp8_tensor_scale(__global const float* restrict amax_in, __global float* restrict scale_out, int n) {
  __local float red_sh[REDUCE_WG];
  __local int nan_sh[REDUCE_WG];
  const int t = get_local_id(0);
  float a = 0.0f;
  int has_nan = 0;
  for (int i = t; i < n; i += REDUCE_WG) {
    has_nan |= isnan(amax_in[i]);
    a = fmax(a, amax_in[i]);
  }
  red_sh[t] = a;
  nan_sh[t] = has_nan;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = REDUCE_WG / 2; s > 0; s >>= 1) {
    if (t < s) {
      red_sh[t] = fmax(red_sh[t], red_sh[t + s]);
      nan_sh[t] |= nan_sh[t + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (t == 0) scale_out[0] = clq_group_scale(red_sh[0], nan_sh[0]);
}

// Per-token dynamic scale, pass 2: each token's group maxima folded into its scale, in group
// order (max is exact, so the order only matters for NaN, which wins either way).
__kernel void fp8_token_scale(__global const float* restrict amax_in, __global float* restrict scale_out, int M,
                              int Kb) {
  const int m = get_global_id(0);
  if (m >= M) return;
  float a = 0.0f;
  int has_nan = 0;
  for (int j = 0; j < Kb; ++j) {
    const float v = amax_in[(size_t)m * Kb + j];
    has_nan |= isnan(v);
    a = fmax(a, v);
  }
  scale_out[m] = clq_group_scale(a, has_nan);
}

// Quantization with one scale per tensor (static input_scale, or pass 2's result; per_row = 0)
// or per token (per_row = 1). Writes the scale into every (token, group) slot so the GEMM reads
// one layout for every scale kind.
__kernel void fp8_quant_tensor(__global const clq_in_t* restrict x, __global const float* restrict scale_in,
                               __global uchar* restrict codes, __global float* restrict scales,
                               __global float* restrict xq, int M, int K, int Kb, int per_row) {
  const int j = get_global_id(0), m = get_global_id(1);
  if (j >= Kb || m >= M) return;
  const float s = scale_in[per_row ? m : 0];
  scales[(size_t)m * Kb + j] = s;
  clq_quant_group(x, s, codes, xq, m, K, Kb, j);
}

// Weight-only (w8a16): activations stay fp16/bf16, widened to fp32 with unit scales.
__kernel void fp8_widen_act(__global const clq_in_t* restrict x, __global float* restrict scales,
                            __global float* restrict xq, int M, int K, int Kb) {
  const int j = get_global_id(0), m = get_global_id(1);
  if (j >= Kb || m >= M) return;
  const int k0 = j * FP8_GROUP, k1 = min(K, k0 + FP8_GROUP);
  const size_t Kp = (size_t)Kb * FP8_GROUP;
  scales[(size_t)m * Kb + j] = 1.0f;
  for (int k = k0; k < k1; ++k) xq[(size_t)m * Kp + k] = clq_load_in(x, (size_t)m * K + k);
  for (int k = k1; k < k0 + FP8_GROUP; ++k) xq[(size_t)m * Kp + k] = 0.0f;
}

// W4A8 emulated, step 1: the e4m3 codes of the quantized activations as fp32, [M][K], the operand
// of the int4 GEMM. Codes, not code * scale: a code is exact in fp16 and bf16 too, so the int4
// tensor-core variants (16-bit operands) multiply the very values SPEC section 7 multiplies.
__kernel void fp8_codes_rows(__global const float* restrict xq, __global float* restrict out, int M, int K, int Kb) {
  const int k = get_global_id(0), m = get_global_id(1);
  if (k >= K || m >= M) return;
  out[(size_t)m * K + k] = xq[(size_t)m * (size_t)Kb * FP8_GROUP + k];
}

// Step 2: each row's fp32 sums times its activation scale, rounded once to the output type.
// W4A8 scales are per token or per tensor, so every 128-block of a row holds the same scale.
__kernel void fp8_scale_rows(__global const float* restrict acc, __global const float* restrict scales,
                             __global clq_out_t* restrict y, int M, int N, int Kb) {
  const int n = get_global_id(0), m = get_global_id(1);
  if (n >= N || m >= M) return;
  clq_store_out(y, (size_t)m * N + n, acc[(size_t)m * N + n] * scales[(size_t)m * Kb]);
}
