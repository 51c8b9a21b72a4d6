// A small synthetic model for whole-checkpoint tools (clquant inspect / verify): four layers in
// four formats, sharded over two files with a model.safetensors.index.json, as a real model
// folder holds them:
//   model.layers.0.self_attn.q_proj   GPTQ int4, act-order, group 128     K=512 N=264
//   model.layers.1.mlp.down_proj      compressed-tensors int4, group 128  K=512 N=128
//   model.layers.2.mlp.gate_proj      FP8 e4m3, 128x128 block scales      K=384 N=256
//   model.layers.3.mlp                MoE: 8 GPTQ int4 experts (H=256, I=128) and a Qwen2-MoE
//                                     gated shared expert (I=384), split across both shards
// plus dense tensors clquant does not run (embeddings, a norm), quantize_config.json (GPTQ) and
// config.json (qwen2_moe routing, top-2).
#pragma once
#include <cstdint>
#include <string>

namespace clq {

struct SynthModelSpec {
  uint64_t seed = 1;
  // Damage to one layer, for the failure paths:
  //   ""            none
  //   "huge-scale"  layer 2's block scales all 1e38: finite and positive, so the loader accepts
  //                 them, but the dequantized weights overflow fp32 and the check fails
  //   "nan-scale"   one of layer 0's fp16 scales NaN: the loader refuses the layer
  std::string corrupt;
};

// Writes the shards, the index and the configs into `dir` (which must exist).
void write_synthetic_model(const std::string& dir, const SynthModelSpec& spec);

}  // namespace clq
