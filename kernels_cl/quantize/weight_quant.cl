// Online weight quantization: a dense weight matrix w [N][K] (fp16, bf16 or fp32, HF Linear
// layout) to integer group codes or block-FP8 codes, round to nearest (docs/numerics.md,
// "Online quantization"). Bit-identical to the host twin (host/reference/quantize_reference.cpp)
// on every device, because nothing here depends on the device's float behaviour:
//   - maxima and minima are taken on integer keys of the fp32 bit patterns (exact, any order,
//     and untouched by a device that flushes subnormals in fmax/fabs);
//   - every division is clq_div_rn (correctly rounded by integer long division);
//   - fp16 / e4m3 encodings are the integer ones of numeric.clh.
//
// weight_quant_int (one work-group per row n and group g of group_size columns along K; the last
// group may be ragged; group_size = K is per channel). BITS 4 or 8, qmax = 2^(BITS-1) - 1:
//   symmetric:  s = fp16(amax / qmax)                     q = clamp(rint(w / s), -qmax-1, qmax) + 2^(BITS-1)
//   asymmetric: s = fp16((max(mx,0) - min(mn,0)) / (2^BITS - 1))
//               z = clamp(rint(-min(mn,0) / s), 0, 2^BITS - 1)   q = clamp(rint(w / s) + z, 0, 2^BITS - 1)
// with w / s divided by the *stored* (fp16-rounded) scale, so s * (q - z) is what a reader gets.
// Codes and zeros are in stored units (unsigned: the signed code plus 2^(BITS-1)). A group whose
// scale rounds to 0 (all zeros, or magnitudes below fp16's range) gets every code and its zero at
// 2^(BITS-1) (it dequantizes to 0); one whose scale overflows fp16 gets the scale +Inf, which the
// host refuses after reading it back (no output is written).
//
// weight_quant_fp8_block (one work-group per 128 x 128 block, ragged at the right and bottom):
//   s = max(amax, 2^-100) / 448 (fp32)     code = e4m3(w / s) (round to nearest even, saturating)
// the floor keeps s a positive normal float (block scales must be > 0) for all-zero blocks.
#include "common/div_rn.clh"
#include "common/numeric.clh"

#ifndef W_DTYPE
#define W_DTYPE 2  // weight element type: 0 = fp32, 1 = fp16, 2 = bf16 (as IN_DTYPE of act_io.clh)
#endif
#ifndef BITS
#define BITS 4  // integer code width, 4 or 8
#endif
#ifndef SYM
#define SYM 1  // 1 symmetric (no zero point), 0 asymmetric
#endif
#define WG 64        // work-items per integer group: groups are 32..K columns, one pass each
#define WG_FP8 256   // work-items per 128 x 128 FP8 block: 64 elements each
#define FP8_BLOCK 128

#if W_DTYPE == 0
typedef uint clq_w_t;  // fp32 read as bits: no float load to canonicalise or flush
inline uint clq_w_bits(clq_w_t v) { return v; }
#elif W_DTYPE == 1
typedef ushort clq_w_t;
inline uint clq_w_bits(clq_w_t v) { return as_uint(clq_fp16_to_f32(v)); }
#else
typedef ushort clq_w_t;
inline uint clq_w_bits(clq_w_t v) { return (uint)v << 16; }
#endif

// fp32 bits -> an unsigned key in the order of the values (negative values reversed below the
// positives), so max/min are integer operations. -0 sorts just below +0.
inline uint clq_order_key(uint b) { return (b & 0x80000000u) ? ~b : (b | 0x80000000u); }
inline uint clq_key_bits(uint key) { return (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key; }

#define QOFF (1 << (BITS - 1))   // stored code of the signed 0
#define QTOP ((1 << BITS) - 1)   // largest stored code

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void weight_quant_int(__global const clq_w_t* restrict w,  // [N][K]
                      __global uchar* restrict codes,      // [N][K] stored units
                      __global ushort* restrict scales,    // [N][G] fp16 bits
                      __global uchar* restrict zeros,      // [N][G] stored units (asymmetric only)
                      int N, int K, int G, int group_size) {
  __local uint hi_sh[WG];
  __local uint lo_sh[WG];
  const int g = get_group_id(0), n = get_group_id(1), lid = get_local_id(0);
  const int k0 = g * group_size, k1 = min(K, k0 + group_size);
  const size_t row = (size_t)n * (size_t)K;
#if SYM
  uint hi = 0u, lo = 0u;  // hi: largest magnitude's bits
#else
  uint hi = 0x80000000u, lo = 0x80000000u;  // keys of +0: the range always holds 0
#endif
  for (int k = k0 + lid; k < k1; k += WG) {
    const uint b = clq_w_bits(w[row + k]);
#if SYM
    hi = max(hi, b & 0x7FFFFFFFu);
#else
    const uint key = clq_order_key(b);
    hi = max(hi, key);
    lo = min(lo, key);
#endif
  }
  hi_sh[lid] = hi;
  lo_sh[lid] = lo;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int step = WG / 2; step > 0; step >>= 1) {
    if (lid < step) {
      hi_sh[lid] = max(hi_sh[lid], hi_sh[lid + step]);
      lo_sh[lid] = min(lo_sh[lid], lo_sh[lid + step]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
#if SYM
  const float span = as_float(hi_sh[0]);
  const float div = (float)(QOFF - 1);
  const float neg_min = 0.0f;
#else
  const float mx = as_float(clq_key_bits(hi_sh[0]));
  const float neg_min = -as_float(clq_key_bits(lo_sh[0]));  // >= 0
  const float span = mx + neg_min;  // max - min, correctly rounded (may overflow to +Inf)
  const float div = (float)QTOP;
#endif
  // A span of +Inf (asymmetric range beyond fp32) is a scale fp16 cannot hold either.
  const ushort s16 = as_uint(span) >= 0x7F800000u ? (ushort)0x7C00u : clq_f32_to_fp16(clq_div_rn(span, div));
  const float s = clq_fp16_to_f32(s16);
  const bool usable = s16 != 0 && s16 != 0x7C00u;
  int z = QOFF;
#if !SYM
  if (usable) z = (int)clamp(rint(clq_div_rn(neg_min, s)), 0.0f, (float)QTOP);
#endif
  if (lid == 0) {
    scales[(size_t)n * G + g] = s16;
#if !SYM
    zeros[(size_t)n * G + g] = (uchar)z;
#endif
  }
  for (int k = k0 + lid; k < k1; k += WG) {
    int q = QOFF;
    if (usable) {
      const float r = rint(clq_div_rn(as_float(clq_w_bits(w[row + k])), s));
#if SYM
      q = (int)clamp(r, (float)(-QOFF), (float)(QOFF - 1)) + QOFF;
#else
      q = (int)clamp(r + (float)z, 0.0f, (float)QTOP);
#endif
    }
    codes[row + k] = (uchar)q;
  }
}

__kernel __attribute__((reqd_work_group_size(WG_FP8, 1, 1)))
void weight_quant_fp8_block(__global const clq_w_t* restrict w,  // [N][K]
                            __global uchar* restrict codes,      // [N][K] e4m3
                            __global float* restrict scales,     // [Nb][Kb]
                            int N, int K) {
  __local uint hi_sh[WG_FP8];
  const int kb = get_group_id(0), nb = get_group_id(1), lid = get_local_id(0);
  const int Kb = (K + FP8_BLOCK - 1) / FP8_BLOCK;
  const int n0 = nb * FP8_BLOCK, k0 = kb * FP8_BLOCK;
  const int rows = min(FP8_BLOCK, N - n0), cols = min(FP8_BLOCK, K - k0);
  uint hi = 0u;
  for (int i = lid; i < rows * cols; i += WG_FP8) {
    const size_t at = (size_t)(n0 + i / cols) * (size_t)K + (size_t)(k0 + i % cols);
    hi = max(hi, clq_w_bits(w[at]) & 0x7FFFFFFFu);
  }
  hi_sh[lid] = hi;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int step = WG_FP8 / 2; step > 0; step >>= 1) {
    if (lid < step) hi_sh[lid] = max(hi_sh[lid], hi_sh[lid + step]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const uint amax = max(hi_sh[0], 0x0D800000u);  // 2^-100: s stays a positive normal float
  const float s = clq_div_rn(as_float(amax), 448.0f);
  if (lid == 0) scales[(size_t)nb * Kb + kb] = s;
  for (int i = lid; i < rows * cols; i += WG_FP8) {
    const size_t at = (size_t)(n0 + i / cols) * (size_t)K + (size_t)(k0 + i % cols);
    codes[at] = clq_f32_to_e4m3(clq_div_rn(as_float(clq_w_bits(w[at])), s));
  }
}
