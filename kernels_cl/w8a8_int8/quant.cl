// W8A8 int8 activation quantization (SPEC section 7), per token, before the integer GEMM:
//
//   s_a[m] = max(max_k |x[m][k]|, 1e-10) / 127       (fp32, correctly rounded)
//   q[m][k] = clamp(rint(x[m][k] / s_a[m]), -128, 127)  (fp32 division correctly rounded, then
//                                                      round half to even)
//
// Bit-identical to its host twin (host/reference/w8a8_int8_reference.cpp) on every device: the
// two divisions go through clq_div_rn, an integer long division of the significands, because
// OpenCL's fp32 division may be 2.5 ulp off where -cl-fp32-correctly-rounded-divide-sqrt is not
// offered (rusticl), and one ulp moves a quotient across a .5 tie.
// The long division is only needed near a tie: q_a = x * (1 / s) is within 2^-14 of x / s (|x / s|
// <= 127.5, the two roundings at most 3 ulp), so where it lies farther than 2^-12 from every
// k + 0.5 both round to the same integer and the fast product is used; the rest (about one value
// in 2000) take clq_div_rn. Same bits, a fraction of the cost.
// A row holding NaN or +-Inf gets s_a = NaN and zero codes: its outputs are NaN, others untouched.
//
// Codes are stored 4 to a word along K (byte k % 4 of word [m][k / 4], two's complement), rows
// Kw words long with zero padding (the GEMM reads whole words).
#include "common/act_io.clh"
#include "common/div_rn.clh"

#ifndef WG
#define WG 64  // work-items per row (a power of two; the op asks for 256 on GPUs)
#endif

// rint(x / s) with the division correctly rounded first (see the top), for finite x and the
// row's positive normal s; inv = 1 / s from the device's own division.
inline float clq_quot_rint(float x, float s, float inv) {
  const float qa = x * inv;
  const float tie_gap = fabs((qa - floor(qa)) - 0.5f);
  return tie_gap > 0x1p-12f ? rint(qa) : rint(clq_div_rn(x, s));
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void w8a8_int8_quant(__global const clq_in_t* restrict x,  // [M][K]
                     __global uint* restrict codes,        // [M][Kw]
                     __global float* restrict scales,      // [M]
                     int M, int K, int Kw) {
  __local float amax_sh[WG];
  __local int bad_sh[WG];
  const int m = get_group_id(0), lid = get_local_id(0);
  float amax = 0.0f;
  int bad = 0;
  for (int k = lid; k < K; k += WG) {
    const float v = clq_load_in(x, (size_t)m * K + k);
    bad |= !isfinite(v);
    amax = fmax(amax, fabs(v));
  }
  amax_sh[lid] = amax;
  bad_sh[lid] = bad;
  barrier(CLK_LOCAL_MEM_FENCE);
  // max is exact and order-free: any reduction tree gives the host's value.
  for (int step = WG / 2; step > 0; step >>= 1) {
    if (lid < step) {
      amax_sh[lid] = fmax(amax_sh[lid], amax_sh[lid + step]);
      bad_sh[lid] |= bad_sh[lid + step];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const int row_bad = bad_sh[0];
  const float s = row_bad ? as_float(0x7FC00000u) : clq_div_rn(fmax(amax_sh[0], 1e-10f), 127.0f);
  if (lid == 0) scales[m] = s;
  const float inv = 1.0f / s;
  for (int w = lid; w < Kw; w += WG) {
    uint word = 0u;
    for (int i = 0; i < 4; ++i) {
      const int k = 4 * w + i;
      if (k >= K || row_bad) continue;
      const float q = clamp(clq_quot_rint(clq_load_in(x, (size_t)m * K + k), s, inv), -128.0f, 127.0f);
      word |= ((uint)(int)q & 0xFFu) << (8 * i);
    }
    codes[(size_t)m * Kw + w] = word;
  }
}
