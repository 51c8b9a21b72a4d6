// First pass of every W4A16 variant: activations x [M][K] (fp16/bf16/fp32) become fp32 rows
// xp [M][Kp] in the packed row order of the weights. This is where act-order is paid for: the
// weights were sorted by g_idx once at load, so the GEMM reads both operands sequentially and
// the gather costs one pass over x (M*K elements, small next to the K*N/2 weight bytes).
// Padding rows (perm = -1) get 0, so whatever their weight nibbles hold adds nothing.
//
// Two extra outputs serve the gemv inner loop (w4a16/gemv.cl): when NIBBLE_SCALED is set, row
// r is stored times 2^-4(r%8) (2^-24 for r%8 = 7), so a nibble can be used in place without a
// shift; and xw[m][w] holds the plain sum of the 8 values of word w (for the folded zero point).
// Scaling by a power of two is exact unless x is below 2^-98, far under any fp16 value.
#include "common/act_io.clh"

#ifndef NIBBLE_SCALED
#define NIBBLE_SCALED 0  // 1 for the gemv variant
#endif
#ifndef HALF_OUT
#define HALF_OUT 0  // 1: xp receives 16-bit values for the tensor-core variant (see below)
#endif
#ifndef HALF_BF16
#define HALF_BF16 0  // with HALF_OUT: bf16 instead of fp16
#endif

// One work-item per word (8 packed rows) of one row of x.
__kernel void w4a16_gather_x(__global const clq_in_t* restrict x,  // [M][K]
                             __global const int* restrict perm,    // [Kp]
                             __global float* restrict xp,          // [M][Kp]
                             __global float* restrict xw,          // [M][Kp/8] (NIBBLE_SCALED)
                             int M, int K, int Kp) {
  const int w = get_global_id(0);
  const int m = get_global_id(1);
  if (w >= Kp / 8 || m >= M) return;
  float v[8];
  float sum = 0.0f;
  for (int i = 0; i < 8; ++i) {
    const int k = perm[w * 8 + i];
    v[i] = k < 0 ? 0.0f : clq_load_in(x, (size_t)m * K + k);
    sum += v[i];
  }
#if HALF_OUT
  // The mma variant reads 16-bit operands: fp16 (exact for fp16 input) or bf16 (exact for bf16).
  __global ushort* xh = (__global ushort*)xp + (size_t)m * Kp + (size_t)w * 8;
  for (int i = 0; i < 8; ++i) xh[i] = HALF_BF16 ? clq_f32_to_bf16(v[i]) : clq_f32_to_fp16(v[i]);
#elif NIBBLE_SCALED
  const float8 scale = (float8)(1.0f, 0x1.0p-4f, 0x1.0p-8f, 0x1.0p-12f, 0x1.0p-16f, 0x1.0p-20f, 0x1.0p-24f, 0x1.0p-24f);
  vstore8(vload8(0, v) * scale, w, xp + (size_t)m * Kp);
  xw[(size_t)m * (Kp / 8) + w] = sum;
#else
  vstore8(vload8(0, v), w, xp + (size_t)m * Kp);
#endif
}

// The nv_mma_skinny variant's activations (w4a16/nv_mma_skinny.cl): the tensor cores' B
// fragments in the order the lanes read them, 16-bit (fp16, or bf16 with HALF_BF16):
//   xf[row block rb][chunk c][lane 4g + t][step s] = {b0, b1}, two 32-bit registers:
//   b0 = x[8rb + g][k, k + 1], b1 = x[8rb + g][k + 8, k + 9], k = 64c + 16s + 2t (packed order)
// Rows past M and padding rows read 0; row blocks up to the launch's rounding are written too.
__kernel void w4a16_gather_frag(__global const clq_in_t* restrict x,  // [M][K]
                                __global const int* restrict perm,    // [Kp]
                                __global uint* restrict xf,           // see above
                                int M, int K, int Kp, int chunks) {
  const int i = get_global_id(0);  // (c * 32 + lane) * 4 + s
  const int rb = get_global_id(1);
  if (i >= chunks * 128) return;
  const int s = i & 3, lane = (i >> 2) & 31, c = i >> 7;
  const int m = rb * 8 + (lane >> 2);
  const int k = c * 64 + s * 16 + 2 * (lane & 3);
  uint v[4];
  for (int j = 0; j < 4; ++j) {
    const int kk = k + (j >> 1) * 8 + (j & 1);
    const int src = kk < Kp ? perm[kk] : -1;
    const float f = (m < M && src >= 0) ? clq_load_in(x, (size_t)m * K + src) : 0.0f;
    v[j] = HALF_BF16 ? clq_f32_to_bf16(f) : clq_f32_to_fp16(f);
  }
  const size_t at = ((size_t)rb * chunks * 128 + i) * 2;
  xf[at] = v[0] | (v[1] << 16);
  xf[at + 1] = v[2] | (v[3] << 16);
}

// The nv_mma_tiled variant's activations (w4a16/nv_mma_tiled.cl): 16-bit rows in the packed
// order, each ld >= Kp wide (whole 64-row chunks), columns past Kp and padding rows 0:
//   xh[m][k] = x[m][perm[k]] as fp16 (or bf16 with HALF_BF16), 8 columns per work-item.
__kernel void w4a16_gather_h16(__global const clq_in_t* restrict x,  // [M][K]
                               __global const int* restrict perm,    // [Kp]
                               __global uint4* restrict xh,          // [M][ld] 16-bit
                               int M, int K, int Kp, int ld) {
  const int w = get_global_id(0);
  const int m = get_global_id(1);
  if (w >= ld / 8 || m >= M) return;
  uint v[8];
  for (int i = 0; i < 8; ++i) {
    const int kk = w * 8 + i;
    const int src = kk < Kp ? perm[kk] : -1;
    const float f = src >= 0 ? clq_load_in(x, (size_t)m * K + src) : 0.0f;
    v[i] = HALF_BF16 ? clq_f32_to_bf16(f) : clq_f32_to_fp16(f);
  }
  xh[(size_t)m * (ld / 8) + w] = (uint4)(v[0] | (v[1] << 16), v[2] | (v[3] << 16), v[4] | (v[5] << 16), v[6] | (v[7] << 16));
}
