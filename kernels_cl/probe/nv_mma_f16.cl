// Known-answer probe: does this device accept inline PTX mma.sync.m16n8k16 (f16 inputs, f32
// accumulate) from OpenCL C, and does it give the right answer? Run by one warp (32 work-items).
// Only NVIDIA's OpenCL accepts `asm`; elsewhere the build fails and the feature reads absent.
//
// Fragment layout (PTX ISA, mma.m16n8k16 .f16): lane = 4*g + t
//   A (row-major 16x16): a0 = {A[g][2t], A[g][2t+1]}, a1 = rows g+8, a2 = cols +8, a3 = both
//   B (col-major 16x8):  b0 = {B[2t][g], B[2t+1][g]},  b1 = k + 8
//   D (16x8):            d0,d1 = D[g][2t..2t+1],  d2,d3 = D[g+8][2t..2t+1]
__kernel void probe_mma_f16(__global const ushort* A,   // [16][16] fp16 bits, row-major
                            __global const ushort* Bt,  // [8][16] fp16 bits: Bt[n][k] = B[k][n]
                            __global float* D) {        // [16][8]
  uint lane = get_local_id(0);
  uint g = lane >> 2, t = lane & 3;
  // Lower 16 bits of each register hold the lower-index element.
  uint a0 = (uint)A[g * 16 + 2 * t] | ((uint)A[g * 16 + 2 * t + 1] << 16);
  uint a1 = (uint)A[(g + 8) * 16 + 2 * t] | ((uint)A[(g + 8) * 16 + 2 * t + 1] << 16);
  uint a2 = (uint)A[g * 16 + 2 * t + 8] | ((uint)A[g * 16 + 2 * t + 9] << 16);
  uint a3 = (uint)A[(g + 8) * 16 + 2 * t + 8] | ((uint)A[(g + 8) * 16 + 2 * t + 9] << 16);
  uint b0 = (uint)Bt[g * 16 + 2 * t] | ((uint)Bt[g * 16 + 2 * t + 1] << 16);
  uint b1 = (uint)Bt[g * 16 + 2 * t + 8] | ((uint)Bt[g * 16 + 2 * t + 9] << 16);
  float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  D[g * 8 + 2 * t] = d0;
  D[g * 8 + 2 * t + 1] = d1;
  D[(g + 8) * 8 + 2 * t] = d2;
  D[(g + 8) * 8 + 2 * t + 1] = d3;
}
