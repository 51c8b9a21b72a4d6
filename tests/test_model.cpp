// Whole-checkpoint inspect and verify (host/model/): layers found by name across shards, each
// described by the loader, each run against its fp64 reference; a damaged layer fails by name
// whether the loader refuses it or only its numbers are wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "host/model/inspect.h"
#include "host/caps/caps.h"
#include "host/model/verify.h"
#include "host/synth/synth.h"
#include "host/synth/synth_model.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

struct TempDir {
  std::string path = test::temp_dir("model");
  ~TempDir() { std::filesystem::remove_all(path); }
};

const char* kLayers[4] = {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj",
                          "model.layers.2.mlp.gate_proj", "model.layers.3.mlp"};

}  // namespace

TEST(Model, InspectListsEveryLayerOfAShardedCheckpoint) {
  TempDir d;
  write_synthetic_model(d.path, {});
  for (const std::string& path : {d.path, d.path + "/model.safetensors.index.json"}) {
    const CheckpointInventory inv = inspect_checkpoint(path, &test::ctx().features());
    ASSERT_EQ(inv.layers.size(), 4u);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(inv.layers[size_t(i)].prefix, kLayers[i]);
      EXPECT_TRUE(inv.layers[size_t(i)].error.empty()) << inv.layers[size_t(i)].error;
      EXPECT_FALSE(inv.layers[size_t(i)].variant_decode.empty());
      EXPECT_GT(inv.layers[size_t(i)].bytes, 0u);
    }
    const LayerInfo &q = inv.layers[0], &ct = inv.layers[1], &f8 = inv.layers[2], &moe = inv.layers[3];
    EXPECT_EQ(q.kind, LayerInfo::Kind::kLinear);
    EXPECT_EQ(q.shape(), "K=512 N=264");
    EXPECT_EQ(q.group_size, 128);
    EXPECT_NE(q.format.find("gptq"), std::string::npos) << q.format;
    EXPECT_NE(q.format.find("g_idx"), std::string::npos) << q.format;
    EXPECT_NE(ct.format.find("compressed-tensors"), std::string::npos) << ct.format;
    EXPECT_NE(f8.format.find("block"), std::string::npos) << f8.format;
    EXPECT_EQ(f8.group_size, 0);
    EXPECT_EQ(moe.kind, LayerInfo::Kind::kMoe);
    EXPECT_EQ(moe.shape(), "E=8 H=256 I=128 shared I=384");
    EXPECT_NE(moe.format.find("sigmoid-gated"), std::string::npos) << moe.format;
    // Every byte is a layer's or counted apart (embeddings and the norm).
    uint64_t sum = inv.other_bytes;
    for (const LayerInfo& l : inv.layers) sum += l.bytes;
    EXPECT_EQ(sum, inv.total_bytes);
    EXPECT_EQ(inv.other_tensors, 2u);
    EXPECT_EQ(inv.other_bytes, uint64_t(32 * 256 * 2 + 256 * 2));
  }
  // Without a device the variants stay empty; the rest is the same.
  EXPECT_TRUE(inspect_checkpoint(d.path, nullptr).layers[0].variant_decode.empty());
}

// Int8 layers are listed (an I8 compressed-tensors weight too) and chosen from the op that runs
// them, not the int4 op's rows: on a device with tensor cores the two tables disagree (w4a16_gemm
// has nv_mma variants, w8a16_int8_gemm does not yet), so a wrong op shows as a wrong variant, not
// only as a wrong name.
TEST(Model, InspectChoosesIntegerLayersFromTheirOwnOp) {
  DeviceFeatures nv;  // features only: inspect runs nothing
  nv.is_gpu = true;
  nv.nv_mma_f16 = true;
  nv.nv_cc_major = 9;
  struct Case {
    const char* name;
    W4SynthSpec spec;
    const char* op;
  };
  W4SynthSpec int4, gptq8, ct8;
  int4.K = gptq8.K = ct8.K = 256;
  int4.N = gptq8.N = ct8.N = 64;
  gptq8.bits = 8;
  ct8.format = W4Format::kCompressedTensors;
  ct8.bits = 8;
  ct8.ct_int_quantized = true;
  ct8.group_size = -1;
  W4SynthSpec w8a8 = w8a8_synth_spec(64, 256, 3);
  w8a8.w8a8_config = true;
  const Case cases[] = {{"gptq int4", int4, "w4a16_gemm"},
                        {"gptq 8-bit", gptq8, "w8a16_int8_gemm"},
                        {"compressed-tensors int-quantized W8A16", ct8, "w8a16_int8_gemm"},
                        {"compressed-tensors W8A8 int8", w8a8, "w8a8_int8_gemm"}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    TempDir d;
    W4Synth syn(k.spec);
    SafetensorsWriter w;
    syn.add_to(w, "model.layers.0.mlp.up_proj");
    w.write(d.path + "/model.safetensors");
    std::ofstream(d.path + "/quantize_config.json") << syn.quantize_config_json();
    const CheckpointInventory inv = inspect_checkpoint(d.path, &nv);
    ASSERT_EQ(inv.layers.size(), 1u);
    const LayerInfo& l = inv.layers[0];
    ASSERT_TRUE(l.error.empty()) << l.error;
    EXPECT_EQ(l.op, k.op);
    EXPECT_EQ(l.variant_decode, select_variant(k.op, nv, 1).variant);
    EXPECT_EQ(l.variant_prefill, select_variant(k.op, nv, 512).variant);
  }
}

TEST(Model, InspectListsARefusedLayerWithItsError) {
  TempDir d;
  write_synthetic_model(d.path, {1, "nan-scale"});
  const CheckpointInventory inv = inspect_checkpoint(d.path, &test::ctx().features());
  ASSERT_EQ(inv.layers.size(), 4u);
  EXPECT_EQ(inv.layers[0].status, Status::kInvalidArgument);
  EXPECT_NE(inv.layers[0].error.find("q_proj.scales"), std::string::npos) << inv.layers[0].error;
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(inv.layers[size_t(i)].error.empty());
}

TEST(Model, LayersInNumericOrderInASingleFile) {
  // One .safetensors file (no index), names whose layer numbers sort wrongly as text.
  TempDir d;
  SafetensorsWriter w;
  std::vector<Fp8Synth> keep;
  keep.reserve(3);
  for (int layer : {10, 2, 9}) {
    Fp8SynthSpec s;
    s.N = 128;
    s.K = 128;
    s.seed = uint64_t(layer);
    keep.emplace_back(s);
    keep.back().add_to(w, "model.layers." + std::to_string(layer) + ".mlp.up_proj");
  }
  w.write(d.path + "/model.safetensors");
  const CheckpointInventory inv = inspect_checkpoint(d.path + "/model.safetensors", nullptr);
  ASSERT_EQ(inv.layers.size(), 3u);
  EXPECT_EQ(inv.layers[0].prefix, "model.layers.2.mlp.up_proj");
  EXPECT_EQ(inv.layers[1].prefix, "model.layers.9.mlp.up_proj");
  EXPECT_EQ(inv.layers[2].prefix, "model.layers.10.mlp.up_proj");
  VerifyReport rep = verify_checkpoint(test::ctx(), d.path + "/model.safetensors");
  EXPECT_TRUE(rep.ok());
  EXPECT_EQ(rep.layers.size(), 3u);
}

TEST(Model, VerifyPassesAMixedShardedCheckpointWithProgress) {
  TempDir d;
  write_synthetic_model(d.path, {test::seed(), ""});
  VerifyOptions o;
  o.seed = test::seed();
  std::vector<std::string> calls;
  o.progress = [&](size_t i, size_t n, const LayerInfo& l, const LayerCheck* done) {
    EXPECT_EQ(n, 4u);
    calls.push_back(std::to_string(i) + (done ? " done " : " start ") + l.prefix);
  };
  const VerifyReport rep = verify_checkpoint(test::ctx(), d.path, o);
  ASSERT_EQ(rep.layers.size(), 4u);
  for (const LayerCheck& r : rep.layers) {
    EXPECT_TRUE(r.ok) << r.layer.prefix << ": " << r.error << " rel " << r.err.rel_mean();
    EXPECT_TRUE(r.error.empty());
    EXPECT_EQ(r.err.nan_count, 0u);
    EXPECT_GT(r.err.count, 0u);
    EXPECT_FALSE(r.variant.empty());
  }
  EXPECT_TRUE(rep.ok());
  EXPECT_EQ(rep.failed, 0u);
  EXPECT_NE(rep.layers[3].variant.find("shared experts"), std::string::npos);
  ASSERT_EQ(calls.size(), 8u);
  EXPECT_EQ(calls[0], std::string("0 start ") + kLayers[0]);
  EXPECT_EQ(calls[7], std::string("3 done ") + kLayers[3]);
  // --layers: a regex searched in the prefixes.
  o.progress = nullptr;
  o.layers = "layers\\.[12]\\.";
  const VerifyReport two = verify_checkpoint(test::ctx(), d.path, o);
  ASSERT_EQ(two.layers.size(), 2u);
  EXPECT_EQ(two.layers[0].layer.prefix, kLayers[1]);
  o.layers = "(";
  EXPECT_THROW(verify_checkpoint(test::ctx(), d.path, o), Error);
  o.layers = "no_such_layer";
  EXPECT_THROW(verify_checkpoint(test::ctx(), d.path, o), Error);
}

TEST(Model, VerifyNamesTheDamagedLayer) {
  for (const char* corrupt : {"huge-scale", "nan-scale"}) {
    SCOPED_TRACE(corrupt);
    TempDir d;
    write_synthetic_model(d.path, {test::seed(), corrupt});
    const VerifyReport rep = verify_checkpoint(test::ctx(), d.path);
    ASSERT_EQ(rep.layers.size(), 4u);
    EXPECT_FALSE(rep.ok());
    EXPECT_EQ(rep.failed, 1u);
    const int bad = std::string(corrupt) == "huge-scale" ? 2 : 0;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(rep.layers[size_t(i)].ok, i != bad) << kLayers[i];
    const LayerCheck& r = rep.layers[size_t(bad)];
    if (bad == 2) {
      // Accepted by the loader (finite positive scales), failed by the numbers.
      EXPECT_TRUE(r.error.empty()) << r.error;
      EXPECT_FALSE(r.err.nan_count == 0 && r.err.rel_mean() < r.tolerance);
    } else {
      EXPECT_NE(r.error.find("[InvalidArgument]"), std::string::npos) << r.error;
      EXPECT_NE(r.error.find(std::string(kLayers[0]) + ".scales"), std::string::npos) << r.error;
    }
  }
}
