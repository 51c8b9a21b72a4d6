// First pass of every W4A16 variant: activations x [M][K] (fp16/bf16/fp32) become fp32 rows
// xp [M][Kp] in the packed row order of the weights. This is where act-order is paid for: the
// weights were sorted by g_idx once at load, so the GEMM reads both operands sequentially and
// the gather costs one pass over x (M*K elements, small next to the K*N/2 weight bytes).
// Padding rows (perm = -1) get 0, so whatever their weight nibbles hold adds nothing.
#include "common/act_io.clh"

__kernel void w4a16_gather_x(__global const clq_in_t* restrict x,  // [M][K]
                             __global const int* restrict perm,    // [Kp]
                             __global float* restrict xp,          // [M][Kp]
                             int M, int K, int Kp) {
  const int r = get_global_id(0);
  const int m = get_global_id(1);
  if (r >= Kp || m >= M) return;
  const int k = perm[r];
  xp[(size_t)m * Kp + r] = k < 0 ? 0.0f : clq_load_in(x, (size_t)m * K + k);
}
