// Known-answer probe for mma.sync.m16n8k32 with e4m3 inputs (sm89+), one warp.
// Fragment layout (PTX ISA, mma.m16n8k32 8-bit types): lane = 4*g + t, four bytes per register,
// lowest byte = lowest k
//   A (row-major 16x32): a0 = A[g][4t..4t+3], a1 = row g+8, a2 = cols +16, a3 = both
//   B (col-major 32x8):  b0 = B[4t..4t+3][g], b1 = k + 16
//   D as for m16n8k16.
uint pack4(__global const uchar* p) {
  return (uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
}

__kernel void probe_mma_e4m3(__global const uchar* A,   // [16][32] e4m3 codes, row-major
                             __global const uchar* Bt,  // [8][32]: Bt[n][k] = B[k][n]
                             __global float* D) {       // [16][8]
  uint lane = get_local_id(0);
  uint g = lane >> 2, t = lane & 3;
  uint a0 = pack4(A + g * 32 + 4 * t);
  uint a1 = pack4(A + (g + 8) * 32 + 4 * t);
  uint a2 = pack4(A + g * 32 + 4 * t + 16);
  uint a3 = pack4(A + (g + 8) * 32 + 4 * t + 16);
  uint b0 = pack4(Bt + g * 32 + 4 * t);
  uint b1 = pack4(Bt + g * 32 + 4 * t + 16);
  float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  D[g * 8 + 2 * t] = d0;
  D[g * 8 + 2 * t + 1] = d1;
  D[(g + 8) * 8 + 2 * t] = d2;
  D[(g + 8) * 8 + 2 * t + 1] = d3;
}
