// gguf_gemm/tiled: 32 tokens x 32 columns per work-group of 64 work-items, 4 x 4 outputs each.
// Per 32-value step of K every work-item turns 16 codes of one column into weights in local
// memory (columns along the work-items, so the code reads are coalesced) and loads 16
// activations, so each weight is dequantized once per tile rather than once per token.
#include "common/act_io.clh"
#include "gguf/affine.clh"

#define TM 32
#define TN 32

__kernel __attribute__((reqd_work_group_size(64, 1, 1))) void gguf_tiled(
    __global const uint* restrict codes, __global const float2* restrict so, __global const clq_in_t* restrict x,
    __global clq_out_t* restrict y, int M, int N, int K) {
  const int n0 = get_group_id(0) * TN, m0 = get_group_id(1) * TM;
  const int t = get_local_id(0);
  const int tn = (t & 7) * 4, tm = (t >> 3) * 4;
  __local float ws[32][TN + 1];  // [k][n]
  __local float xs[TM][32 + 1];  // [m][k]
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  const int col = t & 31, hk = t >> 5;  // this work-item's column and which 16 of the 32 values
  for (int k0 = 0; k0 < K; k0 += 32) {
    const int n = n0 + col, kh = k0 + 16 * hk;
    if (n < N) {
      const float2 g = so[(size_t)(kh / GROUP) * (size_t)N + (size_t)n];
      for (int w = 0; w < 16 / PER_WORD; ++w) {
        const uint word = codes[(size_t)(kh / PER_WORD + w) * (size_t)N + (size_t)n];
        for (int i = 0; i < PER_WORD; ++i)
          ws[16 * hk + w * PER_WORD + i][col] = g.x * (float)((word >> (CODE_BITS * i)) & CODE_MASK) + g.y;
      }
    } else {
      for (int i = 0; i < 16; ++i) ws[16 * hk + i][col] = 0.0f;
    }
    const int m = m0 + col;
    __global const clq_in_t* xr = x + (size_t)m * (size_t)K + (size_t)kh;
    for (int i = 0; i < 16; ++i) xs[col][16 * hk + i] = m < M ? clq_load_in(xr, i) : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < 32; ++k) {
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = xs[tm + i][k];
      for (int j = 0; j < 4; ++j) b[j] = ws[k][tn + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + tm + i;
    if (m >= M) break;
    for (int j = 0; j < 4; ++j) {
      const int nn = n0 + tn + j;
      if (nn < N) clq_store_out(y, (size_t)m * (size_t)N + (size_t)nn, acc[i][j]);
    }
  }
}
