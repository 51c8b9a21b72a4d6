// The shared experts' combine (host/ops/moe/moe_block.cpp): the routed experts and the shared
// MLP have each written fp32 [T][H]; this adds them and rounds once to the output type:
//
//   out[t][n] = routed[t][n] + g[t] * shared[t][n]
//   g[t] = sigmoid(x[t] . gate_w)   (GATED 1: Qwen2-MoE's shared_expert_gate)
//        = 1                        (GATED 0: DeepSeek-V3's shared_experts)
//
// One work-group per token. The gate's dot product over H is reduced in local memory in a fixed
// order, so every run gives the same bits; x is read as stored (the gate is an unquantized
// linear layer in the model, even where the experts take FP8 activations).
#include "common/act_io.clh"

#ifndef GATED
#define GATED 0
#endif
#define WG 64  // work-items per token (a power of two: the tree reduction halves it)

__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void moe_shared_combine(
    __global const float* restrict routed, __global const float* restrict shared, __global const clq_in_t* restrict x,
    __global const float* restrict gate_w, __global clq_out_t* restrict out, int H) {
  const int t = get_group_id(0), lid = get_local_id(0);
  const size_t row = (size_t)t * H;
#if GATED
  __local float part_sh[WG];
  float acc = 0.0f;
  for (int h = lid; h < H; h += WG) acc += clq_load_in(x, row + h) * gate_w[h];
  part_sh[lid] = acc;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) part_sh[lid] += part_sh[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float g = 1.0f / (1.0f + exp(-part_sh[0]));
#else
  const float g = 1.0f;
#endif
  for (int n = lid; n < H; n += WG) clq_store_out(out, row + n, routed[row + n] + g * shared[row + n]);
}
