// The checkpoint loader (host/formats/loader.h): which format it decides from which evidence,
// what it refuses and how the refusal reads, and sharded checkpoints. Host only: no device.
#include <gtest/gtest.h>

#include <cmath>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "host/formats/loader.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "test_util.h"

using namespace clq;

namespace {

const std::string kP = "model.layers.0.mlp.down_proj";

struct TempDir {
  std::string path = test::temp_dir("loader");
  ~TempDir() { std::filesystem::remove_all(path); }
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// One int4 layer in `dir`/model.safetensors, the tensors exactly as the format's writers pack them.
W4SynthSpec w4_spec(W4Format f, int group, bool act_order = false) {
  W4SynthSpec s;
  s.format = f;
  s.K = 256;
  s.N = 64;
  s.group_size = group;
  s.act_order = act_order;
  s.seed = test::seed();
  return s;
}
void write_w4(const std::string& dir, const W4Synth& syn) {
  SafetensorsWriter w;
  syn.add_to(w, kP);
  w.write(dir + "/model.safetensors");
}

// Expects load_linear to throw `want` with every needle in the message.
void expect_refusal(const std::string& path, const LoadOptions& o, Status want, std::vector<std::string> needles,
                    const std::string& prefix = kP) {
  try {
    load_linear(path, prefix, o);
    ADD_FAILURE() << "load_linear accepted " << path;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), want) << e.what();
    for (auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "'" << n << "' not in: " << e.what();
  }
}

}  // namespace

TEST(Loader, FormatFromQuantizeConfig) {
  for (W4Format f : {W4Format::kGptq, W4Format::kGptqV2, W4Format::kAwq}) {
    TempDir d;
    W4Synth syn(w4_spec(f, 64));
    write_w4(d.path, syn);
    write_text(d.path + "/quantize_config.json", syn.quantize_config_json());
    LinearLayer l = load_linear(d.path, kP);
    ASSERT_TRUE(l.is_int4());
    EXPECT_EQ(l.w4().ck.format, f);
    EXPECT_EQ(l.w4().shape.group_size, 64);
    EXPECT_EQ(l.K(), 256);
    EXPECT_EQ(l.N(), 64);
    EXPECT_NE(l.w4().format_source.find("quantize_config.json"), std::string::npos);
    EXPECT_NE(l.describe().find(w4_format_name(f)), std::string::npos) << l.describe();
  }
}

TEST(Loader, GptqWithoutCheckpointFormatIsV1AndConfigJsonIsRead) {
  TempDir d;
  W4Synth syn(w4_spec(W4Format::kGptq, 32));
  write_w4(d.path, syn);
  // transformers' layout: the settings inside config.json, no checkpoint_format key.
  write_text(
      d.path + "/config.json",
      R"({"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32}})");
  LinearLayer l = load_linear(d.path + "/model.safetensors", kP);
  EXPECT_EQ(l.w4().ck.format, W4Format::kGptq);
  EXPECT_EQ(l.w4().shape.group_size, 32);
  EXPECT_NE(l.w4().format_source.find("config.json"), std::string::npos);
}

TEST(Loader, ExplicitFormatAndGroupSizeWinOverTheConfig) {
  TempDir d;
  W4Synth syn(w4_spec(W4Format::kGptqV2, 64));
  write_w4(d.path, syn);
  write_text(d.path + "/quantize_config.json", R"({"bits": 4, "group_size": 128, "quant_method": "gptq"})");
  LoadOptions o;
  o.format = "gptq_v2";
  o.group_size = 64;
  LinearLayer l = load_linear(d.path, kP, o);
  EXPECT_EQ(l.w4().ck.format, W4Format::kGptqV2);
  EXPECT_EQ(l.w4().format_source, "--format");
  EXPECT_EQ(l.w4().shape.group_size, 64);
  // The config's group size (128) disagrees with the scales (G = 4 of 256 rows): the group size
  // is taken from the config when not overridden, and the shapes then refute it.
  EXPECT_THROW(load_linear(d.path, kP, LoadOptions{"gptq_v2", 0}), Error);
}

TEST(Loader, AwqFromShapesGptqRefusedWithoutEvidence) {
  TempDir a;
  write_w4(a.path, W4Synth(w4_spec(W4Format::kAwq, 64)));
  LinearLayer l = load_linear(a.path, kP);
  EXPECT_EQ(l.w4().ck.format, W4Format::kAwq);
  EXPECT_NE(l.w4().format_source.find("shapes"), std::string::npos);

  TempDir g;
  write_w4(g.path, W4Synth(w4_spec(W4Format::kGptqV2, 64)));
  // The refusal names the tensor, its shape and both ways out, in the caller's own spelling.
  expect_refusal(g.path, {}, Status::kInvalidArgument,
                 {kP + ".qweight", "[32, 64]", "--format gptq_v2", "quantize_config.json"});
  LoadOptions py;
  py.format_option = "format=";
  expect_refusal(g.path, py, Status::kInvalidArgument, {"format='gptq'", "format='gptq_v2'"});
  // A config that names no int4 format is cited in the refusal.
  write_text(g.path + "/config.json", R"({"quantization_config": {"quant_method": "bitsandbytes"}})");
  expect_refusal(g.path, {}, Status::kInvalidArgument, {"config.json", "bitsandbytes"});
}

TEST(Loader, RefusalsNameWhatWasFound) {
  TempDir d;
  W4Synth syn(w4_spec(W4Format::kGptq, 64, /*act_order=*/true));
  write_w4(d.path, syn);
  write_text(d.path + "/quantize_config.json", syn.quantize_config_json());
  EXPECT_TRUE(load_linear(d.path, kP).w4().shape.has_g_idx);
  // Wrong prefix: the message lists the tensors under the prefix that was given.
  expect_refusal(d.path, {}, Status::kFormatError, {"model.layers.0.mlp.qweight", "found under it", kP + ".qzeros"},
                 "model.layers.0.mlp");
  expect_refusal(d.path, {}, Status::kFormatError, {"nope.qweight", "no tensor name starts with 'nope.'"}, "nope");
  LoadOptions bad;
  bad.format = "int4";
  expect_refusal(d.path, bad, Status::kInvalidArgument, {"'int4' is not one of gptq, gptq_v2, awq"});
  // A tensor of the layer missing: named.
  TempDir m;
  SafetensorsWriter w;
  const W4Checkpoint c = syn.checkpoint();
  w.add(kP + ".qweight", c.qweight->dtype, c.qweight->shape, c.qweight->data, c.qweight->nbytes);
  w.add(kP + ".scales", c.scales->dtype, c.scales->shape, c.scales->data, c.scales->nbytes);
  w.write(m.path + "/model.safetensors");
  expect_refusal(m.path, LoadOptions{"gptq", 0}, Status::kFormatError,
                 {kP + ".qzeros", "found under it: " + kP + ".qweight, " + kP + ".scales"});
}

TEST(Loader, Fp8BlockAndPerTensorDenseRefused) {
  for (bool block : {true, false}) {
    TempDir d;
    Fp8SynthSpec s;
    s.N = 200;
    s.K = 300;
    s.block = block;
    s.with_input_scale = !block;
    s.seed = test::seed();
    Fp8Synth syn(s);
    SafetensorsWriter w;
    syn.add_to(w, kP);
    w.write(d.path + "/model.safetensors");
    LinearLayer l = load_linear(d.path, kP);
    ASSERT_FALSE(l.is_int4());
    EXPECT_EQ(l.fp8().shape.block, block);
    EXPECT_EQ(l.K(), 300);
    EXPECT_EQ(l.N(), 200);
    EXPECT_EQ(l.fp8().shape.input_scale.has_value(), !block);
    EXPECT_NE(l.describe().find(block ? "block" : "per-tensor"), std::string::npos);
    expect_refusal(d.path, LoadOptions{"gptq", 0}, Status::kInvalidArgument, {"FP8 layer"});
  }
  TempDir d;
  std::vector<uint16_t> v(64 * 32, 0x3C00);
  SafetensorsWriter w;
  w.add(kP + ".weight", StDType::kBF16, {64, 32}, v.data(), v.size() * 2);
  w.write(d.path + "/model.safetensors");
  expect_refusal(d.path, {}, Status::kNotSupported, {"BF16", kP});
}

TEST(Loader, ShardedIndexSplitsALayerAcrossFiles) {
  TempDir d;
  W4Synth syn(w4_spec(W4Format::kGptqV2, 64, /*act_order=*/true));
  const W4Checkpoint c = syn.checkpoint();
  SafetensorsWriter s1, s2;
  s1.add(kP + ".qweight", c.qweight->dtype, c.qweight->shape, c.qweight->data, c.qweight->nbytes);
  s1.add(kP + ".g_idx", c.g_idx->dtype, c.g_idx->shape, c.g_idx->data, c.g_idx->nbytes);
  s2.add(kP + ".qzeros", c.qzeros->dtype, c.qzeros->shape, c.qzeros->data, c.qzeros->nbytes);
  s2.add(kP + ".scales", c.scales->dtype, c.scales->shape, c.scales->data, c.scales->nbytes);
  s1.write(d.path + "/model-00001-of-00002.safetensors");
  s2.write(d.path + "/model-00002-of-00002.safetensors");
  nlohmann::json idx;
  idx["metadata"] = nlohmann::json::object();
  idx["weight_map"][kP + ".qweight"] = "model-00001-of-00002.safetensors";
  idx["weight_map"][kP + ".g_idx"] = "model-00001-of-00002.safetensors";
  idx["weight_map"][kP + ".qzeros"] = "model-00002-of-00002.safetensors";
  idx["weight_map"][kP + ".scales"] = "model-00002-of-00002.safetensors";
  write_text(d.path + "/model.safetensors.index.json", idx.dump());
  write_text(d.path + "/quantize_config.json", syn.quantize_config_json());
  for (const std::string& path : {d.path, d.path + "/model.safetensors.index.json"}) {
    LinearLayer l = load_linear(path, kP);
    EXPECT_EQ(l.w4().ck.format, W4Format::kGptqV2);
    EXPECT_TRUE(l.w4().shape.has_g_idx);
    // Same numbers as the unsharded tensors.
    EXPECT_EQ(dequantize_w4(l.w4().ck), dequantize_w4(c));
  }
}

TEST(Loader, MoeExpertsThroughTheSameFormatDecision) {
  const std::string M = "model.layers.3.mlp";
  MoeSynthSpec s;
  s.kind = MoeWeightKind::kInt4;
  s.E = 4;
  s.H = 256;
  s.I = 128;
  s.int4_format = W4Format::kAwq;
  s.seed = test::seed();
  MoeSynth syn(s);
  TempDir d;
  SafetensorsWriter w;
  syn.add_to(w, M);
  w.write(d.path + "/model.safetensors");
  // AWQ experts are recognised from the shapes, like a linear layer.
  MoeLayer l = load_moe(d.path, M);
  EXPECT_EQ(l.moe.E, 4);
  EXPECT_EQ(l.moe.H, 256);
  EXPECT_EQ(l.moe.I, 128);
  EXPECT_TRUE(l.moe.validated);
  EXPECT_EQ(l.moe.gate_q[3].format, W4Format::kAwq);
  EXPECT_NE(l.format_source.find("shapes"), std::string::npos);
  EXPECT_EQ(moe_dequantize(l.moe, 2, 1), moe_dequantize(syn.checkpoint(), 2, 1));

  // GPTQ experts without a config are refused like a GPTQ linear layer, naming expert 0.
  s.int4_format = W4Format::kGptq;
  MoeSynth g(s);
  TempDir d2;
  SafetensorsWriter w2;
  g.add_to(w2, M);
  w2.write(d2.path + "/model.safetensors");
  try {
    load_moe(d2.path, M);
    ADD_FAILURE() << "GPTQ experts without a format were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(M + ".experts.0.gate_proj.qweight"), std::string::npos) << e.what();
  }
  write_text(d2.path + "/quantize_config.json", R"({"bits": 4, "group_size": 64, "quant_method": "gptq"})");
  EXPECT_EQ(load_moe(d2.path, M).moe.down_q[0].format, W4Format::kGptq);
  // Dense experts reject an int4 format override; no router is an error naming the tensor.
  MoeSynthSpec ds;
  ds.E = 4;
  ds.H = 64;
  ds.I = 32;
  ds.router = false;
  ds.seed = test::seed();
  TempDir d3;
  SafetensorsWriter w3;
  MoeSynth(ds).add_to(w3, M);
  w3.write(d3.path + "/model.safetensors");
  EXPECT_THROW(load_moe(d3.path, M, LoadOptions{"awq", 0}), Error);
  try {
    load_moe(d3.path, M);
    ADD_FAILURE() << "a block without router was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(M + ".gate.weight"), std::string::npos) << e.what();
  }
}

// compressed-tensors pack-quantized int4, as llm-compressor writes it: the tensor names decide
// the format, config.json's quantization_config the group size; what the checkpoint says about
// itself must agree (weight_shape, the ignore list, symmetric without zero points).
TEST(Loader, CompressedTensorsPackQuantized) {
  for (bool sym : {false, true}) {
    TempDir d;
    W4SynthSpec spec = w4_spec(W4Format::kCompressedTensors, 64);
    spec.symmetric = sym;
    W4Synth syn(spec);
    write_w4(d.path, syn);
    write_text(d.path + "/config.json", "{\"quantization_config\": " + syn.quantize_config_json() + "}");
    LinearLayer l = load_linear(d.path, kP);
    ASSERT_TRUE(l.is_int4());
    EXPECT_EQ(l.w4().ck.format, W4Format::kCompressedTensors);
    EXPECT_EQ(l.w4().shape.group_size, 64);
    EXPECT_EQ(l.w4().ck.qzeros == nullptr, sym);
    EXPECT_EQ(l.K(), 256);
    EXPECT_EQ(l.N(), 64);
    EXPECT_NE(l.describe().find("compressed-tensors"), std::string::npos) << l.describe();
    // The dequantized weights equal the synthetic generator's own view of them.
    EXPECT_EQ(dequantize_w4(l.w4().ck), dequantize_w4(syn.checkpoint()));
    // An explicit int4 format that contradicts the tensor names is refused.
    LoadOptions o;
    o.format = "gptq";
    expect_refusal(d.path, o, Status::kInvalidArgument, {"compressed-tensors", "weight_packed", "--format"});
  }
  {  // a layer on the ignore list is not quantized, whatever tensors it has
    TempDir d;
    W4Synth syn(w4_spec(W4Format::kCompressedTensors, 64));
    write_w4(d.path, syn);
    write_text(d.path + "/config.json",
               "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\","
               " \"config_groups\": {\"g\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 4, \"type\": "
               "\"int\", \"group_size\": 64, \"symmetric\": false}}}, \"ignore\": [\"re:.*down_proj\"]}}");
    expect_refusal(d.path, {}, Status::kInvalidArgument, {"ignore"});
  }
  {  // asymmetric by the config, but no zero points on disk
    TempDir d;
    W4SynthSpec spec = w4_spec(W4Format::kCompressedTensors, 64);
    spec.symmetric = true;
    W4Synth syn(spec);
    write_w4(d.path, syn);
    write_text(d.path + "/config.json",
               "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"g\": "
               "{\"targets\": [\"Linear\"], \"format\": \"pack-quantized\", \"weights\": {\"num_bits\": 4, "
               "\"type\": \"int\", \"group_size\": 64, \"symmetric\": false}}}}}");
    expect_refusal(d.path, {}, Status::kFormatError, {"asymmetric", "weight_zero_point"});
  }
  {  // 2-bit pack-quantized is a scheme clquant does not read: refused by name (4 and 8 are read)
    TempDir d;
    W4Synth syn(w4_spec(W4Format::kCompressedTensors, 64));
    write_w4(d.path, syn);
    write_text(d.path + "/config.json",
               "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"g\": "
               "{\"targets\": [\"Linear\"], \"format\": \"pack-quantized\", \"weights\": {\"num_bits\": 2, "
               "\"type\": \"int\"}}}}}");
    expect_refusal(d.path, {}, Status::kNotSupported, {"2-bit", "pack-quantized"});
  }
}

// An independent check of the compressed-tensors reading: the synthetic generator draws the same
// codes, zeros and scales for every format from one seed, so the GPTQ v2 layer (true zeros, the
// long-tested path) is the expected weight; only the scales differ, by the bf16 rounding of the
// compressed-tensors copy (at most 2^-8 relative).
TEST(Loader, CompressedTensorsMatchesTheSameWeightsAsGptqV2) {
  for (bool sym : {false, true})
    for (int gs : {64, -1}) {
      W4SynthSpec a = w4_spec(W4Format::kGptqV2, gs, /*act_order=*/gs == 64), b = a;
      a.symmetric = b.symmetric = sym;
      b.format = W4Format::kCompressedTensors;
      W4Synth v2(a), ct(b);
      const std::vector<double> want = dequantize_w4(v2.checkpoint()), got = dequantize_w4(ct.checkpoint());
      ASSERT_EQ(want.size(), got.size());
      size_t bad = 0;
      for (size_t i = 0; i < want.size(); ++i) bad += std::fabs(got[i] - want[i]) > std::fabs(want[i]) * (1.0 / 256) + 1e-12;
      EXPECT_EQ(bad, 0u) << "sym " << sym << " group " << gs;
    }
}

TEST(Loader, CompressedTensorsWeightShapeMustAgree) {
  TempDir d;
  W4Synth syn(w4_spec(W4Format::kCompressedTensors, 64));
  SafetensorsWriter w;
  const W4Checkpoint ck = syn.checkpoint();
  for (const StTensor* t : {ck.qweight, ck.scales, ck.qzeros})
    w.add(std::string(kP) + "." + t->name, t->dtype, t->shape, t->data, t->nbytes);
  const int64_t wrong[2] = {64, 250};  // K = 250 is not what the packing holds (256)
  w.add(std::string(kP) + ".weight_shape", StDType::kI64, {2}, wrong, sizeof wrong);
  w.write(d.path + "/model.safetensors");
  expect_refusal(d.path, {}, Status::kInvalidShape, {"weight_shape", "[64, 250]", "multiple of 8"});
}

// Mixtral names its experts w1 (gate), w3 (up), w2 (down); the layer is the same.
TEST(Loader, MixtralExpertNames) {
  const std::string M = "model.layers.0.block_sparse_moe";
  MoeSynthSpec s;
  s.E = 4;
  s.H = 256;
  s.I = 128;
  s.mixtral_names = true;
  s.seed = test::seed();
  MoeSynth syn(s);
  TempDir d;
  SafetensorsWriter w;
  syn.add_to(w, M);
  w.write(d.path + "/model.safetensors");
  MoeLayer l = load_moe(d.path, M);
  EXPECT_EQ(l.moe.E, 4);
  ASSERT_EQ(l.moe.gate_d.size(), 4u);
  EXPECT_NE(l.moe.gate_d[2]->name.find("experts.2.w1"), std::string::npos) << l.moe.gate_d[2]->name;
  EXPECT_NE(l.moe.up_d[2]->name.find("experts.2.w3"), std::string::npos);
  EXPECT_NE(l.moe.down_d[2]->name.find("experts.2.w2"), std::string::npos);
  EXPECT_EQ(moe_dequantize(l.moe, 1, 2), moe_dequantize(syn.checkpoint(), 1, 2));
  EXPECT_FALSE(l.config);  // no config.json: no family rules
}

// config.json's model_type fixes the family's routing rules; its keys refine them.
TEST(Loader, MoeRoutingFromConfigJson) {
  auto cfg_of = [](const std::string& json) {
    TempDir d;
    write_text(d.path + "/config.json", json);
    return read_moe_config(d.path);
  };
  auto mix = cfg_of(R"({"model_type": "mixtral", "num_experts_per_tok": 2, "norm_topk_prob": false})");
  ASSERT_TRUE(mix);
  EXPECT_EQ(*mix->top_k, 2);
  EXPECT_TRUE(mix->renormalize);  // Mixtral always renormalises, whatever the key says
  EXPECT_FALSE(mix->grouped);
  auto qwen = cfg_of(R"({"model_type": "qwen3_moe", "num_experts_per_tok": 8, "norm_topk_prob": true})");
  ASSERT_TRUE(qwen);
  EXPECT_TRUE(qwen->renormalize);
  EXPECT_EQ(*qwen->top_k, 8);
  auto v3 = cfg_of(R"({"model_type": "deepseek_v3", "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
                       "routed_scaling_factor": 2.5, "n_shared_experts": 1})");
  ASSERT_TRUE(v3);
  EXPECT_TRUE(v3->grouped);
  EXPECT_FALSE(v3->softmax_scores);
  EXPECT_TRUE(v3->renormalize);
  EXPECT_EQ(v3->n_group, 8);
  EXPECT_EQ(v3->topk_group, 4);
  EXPECT_FLOAT_EQ(v3->routed_scaling, 2.5f);
  EXPECT_EQ(v3->n_shared_experts, 1);
  auto v2 = cfg_of(R"({"model_type": "deepseek_v2", "num_experts_per_tok": 6, "topk_method": "greedy"})");
  ASSERT_TRUE(v2);
  EXPECT_TRUE(v2->grouped);
  EXPECT_TRUE(v2->softmax_scores);
  EXPECT_FALSE(v2->renormalize);
  EXPECT_EQ(v2->n_group, 1);
  EXPECT_FALSE(cfg_of(R"({"model_type": "llama"})"));
  auto status_of = [&](const std::string& json) {
    try {
      cfg_of(json);
    } catch (const Error& e) {
      return e.status();
    }
    return Status::kSuccess;
  };
  EXPECT_EQ(status_of(R"({"model_type": "deepseek_v2", "topk_method": "group_limited_greedy"})"), Status::kNotSupported);
  EXPECT_EQ(status_of(R"({"model_type": "mixtral", "num_experts_per_tok": "2"})"), Status::kFormatError);
  EXPECT_EQ(status_of(R"({"model_type": "deepseek_v3", "n_group": 4, "topk_group": 5})"), Status::kFormatError);
}
