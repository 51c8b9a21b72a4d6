// Known-answer probe of the sm_90a path (runtime/ptx_patch.h): one warpgroup (128 work-items)
// runs wgmma.mma_async m64n8k16 f32.f16.f16, A from registers, B from local memory through a
// matrix descriptor, and round-trips a word through a 200 KiB module-scope .shared array. The
// Hopper instructions are marker comments here; the host replaces them in the PTX (probes.cpp has
// the templates). Built as plain OpenCL the markers are comments: the kernel runs but gives zeros.
//
// A (64x16, row-major) per warp w: rows 16w..16w+15 in the mma.sync A-fragment layout
//   (lane = 4g + t: a0 = A[r][c..c+1], a1 = A[r+8][c..], a2 = A[r][c+8..], a3 = A[r+8][c+8..],
//    r = 16w + g, c = 2t).
// B (N x K = 8 x 16, K-major) in two 8x8 core matrices along K, each 8 rows of 16 bytes: no
//   swizzle, leading byte offset 128 (next core matrix along K), stride byte offset 256.
// D (64x8): d0,d1 = D[r][c..c+1], d2,d3 = D[r+8][c..c+1].
__kernel __attribute__((reqd_work_group_size(128, 1, 1)))
void probe_wgmma_f16(__global const ushort* A,  // [64][16] fp16 bits
                     __global const ushort* B,  // [8][16] fp16 bits
                     __global float* D,         // [64][8]
                     __global uint* smem_out) { // [128]: the value read back from the large .shared array
  __local ushort Bs[8 * 16] __attribute__((aligned(128)));
  const int tid = get_local_id(0), w = tid / 32, l = tid % 32;
  {
    const int n = tid / 16, kk = tid % 16;
    Bs[(kk / 8) * 64 + n * 8 + (kk % 8)] = B[n * 16 + kk];
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int r = 16 * w + l / 4, c = (l % 4) * 2;
  uint a0 = A[r * 16 + c] | ((uint)A[r * 16 + c + 1] << 16);
  uint a1 = A[(r + 8) * 16 + c] | ((uint)A[(r + 8) * 16 + c + 1] << 16);
  uint a2 = A[r * 16 + c + 8] | ((uint)A[r * 16 + c + 9] << 16);
  uint a3 = A[(r + 8) * 16 + c + 8] | ((uint)A[(r + 8) * 16 + c + 9] << 16);
  const uint sb = (uint)(size_t)Bs;
  const ulong desc = (ulong)((sb >> 4) & 0x3FFF) | ((ulong)(128 >> 4) << 16) | ((ulong)(256 >> 4) << 32);
  float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
  asm volatile("// CLQ_WG_FENCE");
  asm volatile("// CLQ_WG_MMA %0 %1 %2 %3 %4 %5 %6 %7 %8"
               : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc));
  asm volatile("// CLQ_WG_COMMIT");
  asm volatile("// CLQ_WG_WAIT %0 %1 %2 %3" : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3));
  D[r * 8 + c] = d0;
  D[r * 8 + c + 1] = d1;
  D[(r + 8) * 8 + c] = d2;
  D[(r + 8) * 8 + c + 1] = d3;
  // Each work-item writes its word near the end of the 200 KiB array and reads it back.
  uint back = 0u;
  const uint word = 0xC0DE0000u | (uint)tid;
  asm volatile("// CLQ_BIG_SMEM %0 %1 %2" : "=r"(back) : "r"(word), "r"((uint)tid * 4u));
  smem_out[tid] = back;
}
