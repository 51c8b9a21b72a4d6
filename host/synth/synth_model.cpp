#include "host/synth/synth_model.h"

#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "host/synth/synth.h"
#include "runtime/status.h"

namespace clq {

void write_synthetic_model(const std::string& dir, const SynthModelSpec& spec) {
  if (!spec.corrupt.empty() && spec.corrupt != "huge-scale" && spec.corrupt != "nan-scale")
    fail(Status::kInvalidArgument, "corruption '" + spec.corrupt + "' is not one of huge-scale, nan-scale");
  SafetensorsWriter all;
  W4SynthSpec q;
  q.format = W4Format::kGptq;
  q.K = 512;
  q.N = 264;
  q.group_size = 128;
  q.act_order = true;
  q.seed = spec.seed;
  W4Synth q_proj(q);
  q_proj.add_to(all, "model.layers.0.self_attn.q_proj");
  W4SynthSpec ct;
  ct.format = W4Format::kCompressedTensors;
  ct.K = 512;
  ct.N = 128;
  ct.group_size = 128;  // the GPTQ config's group size applies to every int4 layer
  ct.seed = spec.seed + 1;
  W4Synth down(ct);
  down.add_to(all, "model.layers.1.mlp.down_proj");
  Fp8SynthSpec f;
  f.N = 256;
  f.K = 384;
  f.seed = spec.seed + 2;
  Fp8Synth gate(f);
  gate.add_to(all, "model.layers.2.mlp.gate_proj");
  MoeSynthSpec m;
  m.kind = MoeWeightKind::kInt4;
  m.E = 8;
  m.H = 256;
  m.I = 128;
  m.group_size = 128;
  m.shared_I = 384;
  m.shared_gate = true;
  m.seed = spec.seed + 3;
  MoeSynth moe(m);
  moe.add_to(all, "model.layers.3.mlp");
  std::mt19937_64 rng(spec.seed + 4);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<uint16_t> embed(32 * 256), norm(256);
  for (auto& v : embed) v = f32_to_bf16(nd(rng));
  for (auto& v : norm) v = f32_to_bf16(1.0f + nd(rng));
  all.add("model.embed_tokens.weight", StDType::kBF16, {32, 256}, embed.data(), embed.size() * 2);
  all.add("model.norm.weight", StDType::kBF16, {256}, norm.data(), norm.size() * 2);
  const std::string whole = dir + "/.synthetic-model-all.safetensors";
  all.write(whole);

  // Shard 1: layers 0 and 1, the embeddings and layer 3's shared expert; shard 2 the rest, so one
  // layer spans both files.
  const std::string s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
  auto shard_of = [&](const std::string& n) {
    if (n.rfind("model.layers.0.", 0) == 0 || n.rfind("model.layers.1.", 0) == 0 ||
        n.rfind("model.embed_tokens.", 0) == 0 || n.rfind("model.layers.3.mlp.shared_expert.", 0) == 0)
      return 1;
    return 2;
  };
  SafetensorsWriter w1, w2;
  nlohmann::json idx;
  idx["metadata"] = {{"total_size", 0}};
  uint64_t total = 0;
  {
    auto f = SafetensorsFile::open(whole);
    for (const StTensor& t : f->tensors()) {
      std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);
      if (spec.corrupt == "huge-scale" && t.name == "model.layers.2.mlp.gate_proj.weight_scale_inv") {
        const float huge = 1e38f;
        for (size_t i = 0; i + 4 <= bytes.size(); i += 4) std::memcpy(&bytes[i], &huge, 4);
      }
      if (spec.corrupt == "nan-scale" && t.name == "model.layers.0.self_attn.q_proj.scales") {
        const uint16_t nan = 0x7E00;
        std::memcpy(&bytes[2 * 5], &nan, 2);
      }
      const int s = shard_of(t.name);
      (s == 1 ? w1 : w2).add(t.name, t.dtype, t.shape, bytes.data(), bytes.size());
      idx["weight_map"][t.name] = s == 1 ? s1 : s2;
      total += t.nbytes;
    }
  }
  std::remove(whole.c_str());
  idx["metadata"]["total_size"] = total;
  w1.write(dir + "/" + s1);
  w2.write(dir + "/" + s2);
  std::ofstream(dir + "/model.safetensors.index.json") << idx.dump(2);
  std::ofstream(dir + "/quantize_config.json") << q_proj.quantize_config_json();
  std::ofstream(dir + "/config.json")
      << R"({"model_type": "qwen2_moe", "num_experts_per_tok": 2, "norm_topk_prob": false,
 "shared_expert_intermediate_size": 384, "hidden_size": 256})";
}

}  // namespace clq
