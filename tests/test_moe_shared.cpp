// Shared experts of a MoE block (host/ops/moe/moe_block.h): DeepSeek-V3's ungated shared_experts
// and Qwen2-MoE's sigmoid-gated shared_expert, on the device in every expert weight kind, against
// the fp64 reference of the whole block; loading both namings and refusing broken ones.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>

#include "clquant/clquant.h"
#include "host/formats/loader.h"
#include "host/ops/moe/moe_block.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/moe_test_util.h"
#include "tests/test_util.h"

using namespace clq;
using clq::test::grid_logits;

namespace {

const std::string kP = "model.layers.3.mlp";

struct TempDir {
  std::string path = test::temp_dir("shared");
  ~TempDir() { std::filesystem::remove_all(path); }
};


MoeSynthSpec shared_spec(MoeWeightKind k, bool qwen, uint64_t seed) {
  MoeSynthSpec s;
  s.kind = k;
  s.E = 8;
  s.H = 256;
  s.I = 128;
  s.shared_I = qwen ? 384 : 256;  // Qwen2: its own size; DeepSeek: n_shared_experts (2) * I
  s.shared_gate = qwen;
  s.int4_format = W4Format::kGptq;
  s.seed = seed;
  return s;
}

struct BlockRun {
  std::vector<uint8_t> y;
  std::vector<int> ids;
  std::vector<float> w;
};

BlockRun run_block(MoeBlock& op, const std::vector<uint8_t>& x, DType xt, DType yt, int64_t T, const MoeRouting& r,
                   const std::vector<float>& logits, const MoeRunOptions& o) {
  auto& c = test::ctx();
  const size_t yb = size_t(T * op.H()) * dtype_size(yt);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(yb), dl = c.alloc(logits.size() * 4);
  c.write(dx, x.data(), x.size());
  c.write(dl, logits.data(), logits.size() * 4);
  c.fill_u32(dy, 0xFFFFFFFFu, yb);  // poison: NaN in every output type
  op.run(dx, xt, dy, yt, T, r, o, &dl);
  BlockRun out;
  out.y.resize(yb);
  c.read(dy, out.y.data(), yb);
  op.routed().read_routing(&out.ids, &out.w);
  return out;
}

void expect_within(const ErrorStats& e, const std::string& what) {
  EXPECT_EQ(e.nan_count, 0u) << what;
  EXPECT_LT(e.max_abs_err, MoeProblem::kMaxAbsTolerance) << what;
  EXPECT_LT(e.rel_mean(), MoeProblem::kRelTolerance) << what << " max abs err " << e.max_abs_err;
}

}  // namespace

TEST(MoeShared, EveryWeightKindAndFamilyAgainstFp64) {
  auto& c = test::ctx();
  struct Kind {
    MoeWeightKind kind;
    W4Format fmt;
  };
  const Kind kinds[] = {{MoeWeightKind::kDense, W4Format::kGptq},
                        {MoeWeightKind::kInt4, W4Format::kGptq},
                        {MoeWeightKind::kInt4, W4Format::kAwq},
                        {MoeWeightKind::kFp8, W4Format::kGptq}};
  for (const Kind& k : kinds)
    for (int qwen = 0; qwen < 2; ++qwen) {
      MoeSynthSpec s = shared_spec(k.kind, qwen, test::seed() + uint64_t(qwen));
      s.int4_format = k.fmt;
      MoeSynth syn(s);
      const MoeCheckpoint& m = syn.checkpoint();
      ASSERT_TRUE(m.shared);
      MoeBlock op(c, m);
      ASSERT_TRUE(op.has_shared());
      EXPECT_EQ(op.shared_I(), s.shared_I);
      EXPECT_EQ(op.shared_gated(), bool(qwen));
      for (int64_t T : {1, 5, 37})
        for (DType yt : {DType::kBF16, DType::kF32}) {
          const std::string what = std::string(moe_kind_name(k.kind)) +
                                   (k.kind == MoeWeightKind::kInt4 ? std::string(" ") + w4_format_name(k.fmt) : "") +
                                   (qwen ? " qwen2 gated" : " deepseek") + " T=" + std::to_string(T) + " out " +
                                   dtype_name(yt);
          MoeRouting r;
          r.top_k = 2;
          r.renormalize = qwen == 0;
          auto x = random_activations(T, m.H, DType::kBF16, test::seed() + uint64_t(T));
          auto logits = grid_logits(T, m.E, test::seed() + uint64_t(T) + 99);
          MoeRunOptions o;
          o.decode = -1;
          BlockRun got = run_block(op, x, DType::kBF16, yt, T, r, logits, o);
          auto ref = moe_block_reference(m, x.data(), DType::kBF16, T, got.ids, got.w, r.top_k);
          expect_within(compare_output(got.y.data(), yt, ref), what);
          // The test can fail: the shared part (and the gate) move the result well past tolerance.
          auto routed_only = moe_reference(m, x.data(), DType::kBF16, T, got.ids, got.w, r.top_k);
          EXPECT_FALSE(MoeProblem::within_tolerance(compare_output(got.y.data(), yt, routed_only))) << what;
          if (qwen) {
            MoeCheckpoint ungated = m;
            ungated.shared_gate = nullptr;
            auto ref_ungated = moe_block_reference(ungated, x.data(), DType::kBF16, T, got.ids, got.w, r.top_k);
            EXPECT_FALSE(MoeProblem::within_tolerance(compare_output(got.y.data(), yt, ref_ungated))) << what;
          }
        }
    }
}

TEST(MoeShared, DecodePathAndSplitsAgree) {
  // The decode path (forced, as a GPU would take it) and forced split-K give the same block.
  auto& c = test::ctx();
  for (int qwen = 0; qwen < 2; ++qwen) {
    MoeSynth syn(shared_spec(MoeWeightKind::kDense, qwen, test::seed() + 5));
    const MoeCheckpoint& m = syn.checkpoint();
    MoeBlock op(c, m);
    const int64_t T = 3;
    MoeRouting r;
    r.top_k = 2;
    auto x = random_activations(T, m.H, DType::kF16, test::seed() + 6);
    auto logits = grid_logits(T, m.E, test::seed() + 7);
    for (int decode : {1, -1})
      for (int splits : {0, 2}) {
        MoeRunOptions o;
        o.decode = decode;
        o.splits = splits;
        BlockRun got = run_block(op, x, DType::kF16, DType::kF16, T, r, logits, o);
        auto ref = moe_block_reference(m, x.data(), DType::kF16, T, got.ids, got.w, r.top_k);
        expect_within(
            compare_output(got.y.data(), DType::kF16, ref),
            "decode " + std::to_string(decode) + " splits " + std::to_string(splits) + (qwen ? " qwen2" : " deepseek"));
      }
  }
}

TEST(MoeShared, RoutedByTheCallerAndFromTheRouter) {
  auto& c = test::ctx();
  MoeSynth syn(shared_spec(MoeWeightKind::kInt4, true, test::seed() + 11));
  const MoeCheckpoint& m = syn.checkpoint();
  MoeBlock op(c, m);
  const int64_t T = 4;
  auto x = random_activations(T, m.H, DType::kBF16, test::seed() + 12);
  std::vector<int> ids = {0, 7, 3, 5, 1, 2, 6, 4};
  std::vector<float> w = {0.7f, 0.3f, 0.5f, 0.5f, 1.0f, 0.25f, 0.6f, 0.4f};
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  c.fill_u32(dy, 0xFFFFFFFFu, x.size());
  op.run_routed(dx, DType::kBF16, dy, DType::kBF16, T, ids, w, 2);
  std::vector<uint8_t> y(x.size());
  c.read(dy, y.data(), y.size());
  expect_within(compare_output(y.data(), DType::kBF16, moe_block_reference(m, x.data(), DType::kBF16, T, ids, w, 2)),
                "run_routed");
  // From the router weight (no logits given): the host twin routes the device's logits.
  MoeRouting r;
  r.top_k = 2;
  c.fill_u32(dy, 0xFFFFFFFFu, x.size());
  op.run(dx, DType::kBF16, dy, DType::kBF16, T, r);
  c.read(dy, y.data(), y.size());
  std::vector<float> logits, hw;
  std::vector<int> hids;
  op.routed().read_logits(&logits);
  moe_route_host(logits, T, m.E, r, nullptr, &hids, &hw);
  expect_within(compare_output(y.data(), DType::kBF16, moe_block_reference(m, x.data(), DType::kBF16, T, hids, hw, 2)),
                "router");
}

TEST(MoeShared, LoadedByNameInBothFamilies) {
  for (int qwen = 0; qwen < 2; ++qwen) {
    TempDir d;
    MoeSynth syn(shared_spec(MoeWeightKind::kDense, qwen, test::seed() + 20));
    SafetensorsWriter w;
    syn.add_to(w, kP);
    w.write(d.path + "/model.safetensors");
    if (qwen)
      std::ofstream(d.path + "/config.json")
          << R"({"model_type": "qwen2_moe", "num_experts_per_tok": 2, "shared_expert_intermediate_size": 384})";
    else
      std::ofstream(d.path + "/config.json")
          << R"({"model_type": "deepseek_v3", "num_experts_per_tok": 2, "n_group": 2, "topk_group": 2,
                 "n_shared_experts": 2, "moe_intermediate_size": 128})";
    MoeLayer l = load_moe(d.path, kP);
    ASSERT_TRUE(l.moe.shared);
    EXPECT_EQ(l.moe.shared->I, qwen ? 384 : 256);
    EXPECT_EQ(l.moe.shared->E, 1);
    EXPECT_EQ(l.moe.shared_gate != nullptr, bool(qwen));
    // The loaded block computes what the synthetic one does.
    const int64_t T = 2;
    auto x = random_activations(T, 256, DType::kBF16, test::seed() + 21);
    std::vector<int> ids = {1, 2, 3, 4};
    std::vector<float> wt = {0.5f, 0.5f, 0.9f, 0.1f};
    EXPECT_EQ(moe_block_reference(l.moe, x.data(), DType::kBF16, T, ids, wt, 2),
              moe_block_reference(syn.checkpoint(), x.data(), DType::kBF16, T, ids, wt, 2));
    // A config whose shared size disagrees with the tensors is refused, naming both.
    std::ofstream(d.path + "/config.json")
        << (qwen ? R"({"model_type": "qwen2_moe", "shared_expert_intermediate_size": 512})"
                 : R"({"model_type": "deepseek_v3", "n_shared_experts": 1, "moe_intermediate_size": 128})");
    try {
      load_moe(d.path, kP);
      ADD_FAILURE() << "accepted a config with another shared size";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidShape) << e.what();
      EXPECT_NE(std::string(e.what()).find(qwen ? "512" : "128"), std::string::npos) << e.what();
    }
  }
}

TEST(MoeShared, BrokenSharedExpertsAreRefused) {
  MoeSynth syn(shared_spec(MoeWeightKind::kDense, true, test::seed() + 30));
  const MoeCheckpoint& m = syn.checkpoint();
  auto write = [&](const std::string& dir, const std::function<void(SafetensorsWriter&)>& extra, bool drop_gate) {
    // Every tensor of the synthetic block except the gate (when dropped), plus `extra`.
    SafetensorsWriter all;
    syn.add_to(all, kP);
    all.write(dir + "/full.safetensors");
    auto f = SafetensorsFile::open(dir + "/full.safetensors");
    SafetensorsWriter w;
    for (const StTensor& t : f->tensors())
      if (!(drop_gate && t.name == kP + ".shared_expert_gate.weight"))
        w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
    extra(w);
    w.write(dir + "/model.safetensors");
    std::filesystem::remove(dir + "/full.safetensors");
  };
  auto expect = [&](const std::string& dir, Status s, const std::string& needle) {
    try {
      load_moe(dir, kP);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), s) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  {  // Qwen2-MoE shared expert without its gate
    TempDir d;
    write(
        d.path, [](SafetensorsWriter&) {}, true);
    expect(d.path, Status::kFormatError, "shared_expert_gate");
  }
  {  // gate of the wrong shape
    TempDir d;
    std::vector<uint16_t> g(2 * 256, 0x3F80);
    write(
        d.path,
        [&](SafetensorsWriter& w) {
          w.add(kP + ".shared_expert_gate.weight", StDType::kBF16, {2, 256}, g.data(), g.size() * 2);
        },
        true);
    expect(d.path, Status::kInvalidShape, "[1, 256]");
  }
  {  // a NaN in the gate
    TempDir d;
    std::vector<uint16_t> g(256, 0x3F80);
    g[17] = 0x7FC0;
    write(
        d.path,
        [&](SafetensorsWriter& w) {
          w.add(kP + ".shared_expert_gate.weight", StDType::kBF16, {1, 256}, g.data(), g.size() * 2);
        },
        true);
    expect(d.path, Status::kInvalidArgument, "[0][17]");
  }
  {  // a gate without the shared expert it gates
    TempDir d;
    SafetensorsWriter all;
    syn.add_to(all, kP);
    all.write(d.path + "/full.safetensors");
    auto f = SafetensorsFile::open(d.path + "/full.safetensors");
    SafetensorsWriter w;
    for (const StTensor& t : f->tensors())
      if (t.name.find(".shared_expert.") == std::string::npos) w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
    w.write(d.path + "/model.safetensors");
    std::filesystem::remove(d.path + "/full.safetensors");
    expect(d.path, Status::kFormatError, "gates a shared expert");
  }
  {  // a shared MLP breaking the experts' rules (I % 16)
    TempDir d;
    MoeSynthSpec s = shared_spec(MoeWeightKind::kDense, false, test::seed() + 33);
    s.shared_I = 40;
    MoeSynth odd(s);
    SafetensorsWriter w;
    odd.add_to(w, kP);
    w.write(d.path + "/model.safetensors");
    expect(d.path, Status::kInvalidShape, "shared expert: intermediate size I=40");
  }
  {  // a config promising shared experts the checkpoint lacks
    TempDir d;
    MoeSynthSpec s = shared_spec(MoeWeightKind::kDense, false, test::seed() + 31);
    s.shared_I = 0;
    MoeSynth plain(s);
    SafetensorsWriter w;
    plain.add_to(w, kP);
    w.write(d.path + "/model.safetensors");
    std::ofstream(d.path + "/config.json")
        << R"({"model_type": "deepseek_v3", "n_shared_experts": 1, "moe_intermediate_size": 128})";
    expect(d.path, Status::kFormatError, "shared experts");
  }
  {  // shared MLP with another hidden size
    MoeCheckpoint bad = m;
    MoeSynthSpec s = shared_spec(MoeWeightKind::kDense, false, test::seed() + 32);
    s.H = 128;
    MoeSynth other(s);
    bad.shared = other.checkpoint().shared;
    bad.validated = false;
    try {
      validate_moe(bad);
      ADD_FAILURE() << "accepted a shared expert of H = 128";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidShape);
      EXPECT_NE(std::string(e.what()).find("shared expert"), std::string::npos) << e.what();
    }
  }
}

TEST(MoeShared, CApiRunsTheSharedExperts) {
  // The C API's MoE handle runs the whole block: an FP8 DeepSeek-style block loaded from disk.
  TempDir d;
  MoeSynth syn(shared_spec(MoeWeightKind::kFp8, false, test::seed() + 40));
  SafetensorsWriter w;
  syn.add_to(w, kP);
  w.write(d.path + "/model.safetensors");
  clq_context* cc = nullptr;
  ASSERT_EQ(clq_context_open(nullptr, &cc), CLQ_SUCCESS) << clq_last_error();
  clq_moe* h = nullptr;
  ASSERT_EQ(clq_moe_load(cc, d.path.c_str(), kP.c_str(), nullptr, 0, &h), CLQ_SUCCESS) << clq_last_error();
  int64_t sI = -1;
  int gated = -1;
  ASSERT_EQ(clq_moe_shared_experts(h, &sI, &gated), CLQ_SUCCESS);
  EXPECT_EQ(sI, 256);
  EXPECT_EQ(gated, 0);
  const int64_t T = 3, H = 256;
  auto x = random_activations(T, H, DType::kBF16, test::seed() + 41);
  clq_moe_routing r;
  clq_moe_routing_init(&r);
  r.top_k = 2;
  std::vector<uint16_t> y(size_t(T * H), 0x7FC0);
  ASSERT_EQ(clq_moe_run_host(h, x.data(), CLQ_BF16, y.data(), CLQ_BF16, T, &r), CLQ_SUCCESS) << clq_last_error();
  // The routing the device chose, from the same block on the test's context.
  MoeBlock op(test::ctx(), syn.checkpoint());
  auto& c = test::ctx();
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  MoeRouting mr;
  mr.top_k = 2;
  op.run(dx, DType::kBF16, dy, DType::kBF16, T, mr);
  std::vector<float> logits, hw;
  std::vector<int> ids;
  op.routed().read_logits(&logits);
  moe_route_host(logits, T, 8, mr, nullptr, &ids, &hw);
  expect_within(compare_output(y.data(), DType::kBF16,
                               moe_block_reference(syn.checkpoint(), x.data(), DType::kBF16, T, ids, hw, 2)),
                "C API");
  clq_moe_release(h);
  clq_context_release(cc);
}

// transformers saves a whole model in its torch_dtype, so a bf16 DeepSeek-V3 checkpoint holds a
// BF16 e_score_correction_bias: it is widened exactly to F32 at load (and routes as that F32).
TEST(MoeShared, Bf16CorrectionBiasIsWidened) {
  TempDir d;
  MoeSynthSpec spec = shared_spec(MoeWeightKind::kDense, 0, test::seed() + 40);
  spec.bias = true;
  MoeSynth syn(spec);
  SafetensorsWriter w0;
  syn.add_to(w0, kP);
  w0.write(d.path + "/f32.safetensors");
  Checkpoint f32 = Checkpoint::open(d.path + "/f32.safetensors");
  SafetensorsWriter w;
  std::vector<uint16_t> b16;
  for (const std::string& n : f32.names_with_prefix("")) {
    const StTensor& t = f32.require(n);
    if (n == std::string(kP) + ".gate.e_score_correction_bias") {
      ASSERT_EQ(t.dtype, StDType::kF32);
      for (int64_t i = 0; i < t.numel(); ++i) {
        float v;
        std::memcpy(&v, t.data + 4 * i, 4);
        b16.push_back(f32_to_bf16(v));
      }
      w.add(n, StDType::kBF16, t.shape, b16.data(), b16.size() * 2);
    } else {
      w.add(n, t.dtype, t.shape, t.data, t.nbytes);
    }
  }
  ASSERT_FALSE(b16.empty());
  w.write(d.path + "/model.safetensors");
  Checkpoint ck = Checkpoint::open(d.path + "/model.safetensors");
  MoeCheckpoint m = moe_from_checkpoint(ck, kP, std::nullopt, 0);
  validate_moe(m);
  ASSERT_TRUE(m.bias);
  EXPECT_EQ(m.bias->dtype, StDType::kF32);
  MoeCheckpoint copy = m;  // the widened values live as long as any copy of the block
  m = MoeCheckpoint();
  for (size_t i = 0; i < b16.size(); ++i) {
    float v;
    std::memcpy(&v, copy.bias->data + 4 * i, 4);
    EXPECT_EQ(v, bf16_to_f32(b16[i])) << i;
  }
}
