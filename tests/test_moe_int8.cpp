// Fused MoE with int8 weight-only experts (issue 15, SPEC sections 5 and 7): GPTQ 8-bit (v1 and
// v2 zero conventions, groups, act-order) and compressed-tensors int-quantized int8 (channel or
// group scales in fp32, symmetric or with I8 zero points). Each against the fp64 reference
// computed from the checkpoint as stored (moe_reference: dequantize_w4 at 8 bits), outputs
// poisoned with NaN first, on every fused_moe path that takes them (the decode path refuses int8
// experts, and the dispatcher sends them to general); the loader from synthesized folders in both
// namings (Qwen-MoE gate_proj/up_proj/down_proj, Mixtral w1/w3/w2); bad input refused by rule.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>

#include "host/formats/loader.h"
#include "host/formats/moe.h"
#include "host/ops/moe/fused_moe.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/moe_test_util.h"
#include "tests/test_util.h"

using namespace clq;
using clq::test::MoeRun;
using clq::test::run_moe;

namespace {

MoeSynthSpec int8_spec(W4Format f, int64_t H, int64_t I, int gs, bool act_order, uint64_t seed) {
  return test::int_experts_spec(MoeWeightKind::kInt8, f, H, I, gs, act_order, seed);
}

void expect_matches(const MoeRun& r, const MoeCheckpoint& m, int64_t T, int k, DType dt,
                    const std::vector<int>& expert_map = {}) {
  const ErrorStats e = compare_output(r.y.data(), dt, moe_reference(m, r.x.data(), dt, T, r.ids, r.w, k, expert_map));
  EXPECT_TRUE(MoeProblem::within_tolerance(e))
      << "max abs " << e.max_abs_err << " rel mean " << e.rel_mean() << " NaN " << e.nan_count;
}

// The cases every int8 layout goes through: T = 1 (decode), 5 and 33 (odd; > 16 gives blocks of
// several rows), top-1/2/3, the table's choice and the general path forced (both must be general),
// host ids where tokens share experts with split-K and small blocks, and an expert map.
void exercise(const MoeCheckpoint& m, const std::string& what) {
  auto& c = test::ctx();
  for (const char* tuning : {"cpu", "gpu"}) {
    test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
    FusedMoe op(c, m);
    ASSERT_EQ(op.kind(), MoeWeightKind::kInt8);
    for (int k : {1, 2, 3})
      for (int64_t T : {1, 5, 33}) {
        SCOPED_TRACE(what + " k=" + std::to_string(k) + " T=" + std::to_string(T) + " " + tuning + " seed " +
                     std::to_string(test::seed()));
        for (const char* path : {"", "general"}) {
          MoeRunOptions o;
          o.variant = path;
          const DType dt = (T + k) % 2 ? DType::kBF16 : DType::kF16;
          MoeRun r = run_moe(op, m, T, k, dt, test::seed() + uint64_t(T * 10 + k), o);
          EXPECT_EQ(r.row, "general");
          expect_matches(r, m, T, k, dt);
        }
      }
    const std::vector<int> ids = {6, 1, 6, 3, 1, 6, 6, 3, 2, 1};
    for (int splits : {1, 3})
      for (int bs : {1, 4}) {
        SCOPED_TRACE(what + " splits " + std::to_string(splits) + " bs " + std::to_string(bs) + " " + tuning);
        MoeRunOptions o;
        o.splits = splits;
        o.block_size = bs;
        MoeRun r = run_moe(op, m, 5, 2, DType::kBF16, test::seed() + uint64_t(splits * 7 + bs), o, &ids);
        expect_matches(r, m, 5, 2, DType::kBF16);
      }
    MoeRunOptions ep;
    ep.expert_map = {0, 1, 2, 3, -1, -1, -1, -1};
    SCOPED_TRACE(what + " expert map " + tuning);
    MoeRun r = run_moe(op, m, 9, 3, DType::kF16, test::seed() + 99, ep);
    expect_matches(r, m, 9, 3, DType::kF16, ep.expert_map);
  }
}

}  // namespace

// GPTQ 8-bit experts, v1 (stores zero - 1) and v2: an aligned shape with groups of 64; an awkward
// one (H 264, I 144, groups of 24: K pads to 288 and 160, N not a multiple of any tile), symmetric
// for v1 (stored 127, zero 128); act-order with groups of 34 that pad inside every group and leave
// a short last group (H 232, I 144).
TEST(MoeInt8, GptqExpertsAgainstFp64) {
  struct Case {
    int64_t H, I;
    int gs;
    bool act_order, symmetric;
  };
  for (W4Format f : {W4Format::kGptq, W4Format::kGptqV2})
    for (Case cs : {Case{256, 128, 64, false, false}, Case{264, 144, 24, false, true}, Case{232, 144, 34, true, false}}) {
      MoeSynthSpec s = int8_spec(f, cs.H, cs.I, cs.gs, cs.act_order, test::seed() + uint64_t(cs.H));
      s.symmetric = cs.symmetric && f == W4Format::kGptq;
      MoeSynth syn(s);
      const MoeCheckpoint& m = syn.checkpoint();
      ASSERT_EQ(m.gate_q[0].bits, 8);
      EXPECT_EQ(moe_uses_act_order(m), cs.act_order);
      exercise(m, std::string(w4_format_name(f)) + " H=" + std::to_string(cs.H) + " I=" + std::to_string(cs.I) +
                      " gs=" + std::to_string(cs.gs) + (cs.act_order ? " act-order" : ""));
    }
}

// compressed-tensors int-quantized int8: I8 weights [N, K] with fp32 scales fp16 cannot hold,
// per channel (one group over K) and per group of 64, symmetric (no zero-point tensor) and
// asymmetric (I8 zero points); and act-order groups (weight_g_idx).
TEST(MoeInt8, CompressedTensorsExpertsAgainstFp64) {
  struct Case {
    int64_t H, I;
    int gs;
    bool symmetric, act_order;
  };
  for (Case cs : {Case{264, 144, -1, true, false}, Case{256, 192, 64, true, false}, Case{256, 128, 64, false, false},
                  Case{232, 144, 34, true, true}}) {
    MoeSynthSpec s = int8_spec(W4Format::kCompressedTensors, cs.H, cs.I, cs.gs, cs.act_order, test::seed() + 61);
    s.symmetric = cs.symmetric;
    MoeSynth syn(s);
    const MoeCheckpoint& m = syn.checkpoint();
    ASSERT_EQ(m.gate_q[0].qweight->dtype, StDType::kI8);
    ASSERT_EQ(m.gate_q[0].scales->dtype, StDType::kF32);
    EXPECT_EQ(m.gate_q[0].qzeros == nullptr, cs.symmetric);
    exercise(m, "compressed-tensors H=" + std::to_string(cs.H) + " I=" + std::to_string(cs.I) +
                    " gs=" + std::to_string(cs.gs) + (cs.symmetric ? " sym" : " asym") + (cs.act_order ? " act-order" : ""));
  }
}

// The features are really exercised: the same codes read with the other zero convention, or with
// the act-order permutation dropped, give a reference far from the device output. Forcing the
// decode path is refused naming the rule, by option and by CLQ_VARIANT.
TEST(MoeInt8, ZeroConventionAndOrderMatterDecodeRefused) {
  auto& c = test::ctx();
  // Groups that divide K, so the layer without its g_idx is still a valid one to compare with.
  MoeSynth syn(int8_spec(W4Format::kGptq, 256, 128, 64, true, test::seed() + 71));
  const MoeCheckpoint& m = syn.checkpoint();
  FusedMoe op(c, m);
  MoeRun r = run_moe(op, m, 4, 2, DType::kF16, test::seed() + 72, {});
  expect_matches(r, m, 4, 2, DType::kF16);
  MoeCheckpoint v2 = m, plain = m;
  for (auto* v : {&v2.gate_q, &v2.up_q, &v2.down_q})
    for (W4Checkpoint& w : *v) w.format = W4Format::kGptqV2;
  for (auto* v : {&plain.gate_q, &plain.up_q, &plain.down_q})
    for (W4Checkpoint& w : *v) w.g_idx = nullptr;
  v2.validated = plain.validated = false;
  for (const MoeCheckpoint* other : {&v2, &plain}) {
    const ErrorStats e =
        compare_output(r.y.data(), DType::kF16, moe_reference(*other, r.x.data(), DType::kF16, 4, r.ids, r.w, 2));
    EXPECT_GT(e.rel_mean(), 10 * MoeProblem::kRelTolerance) << (other == &v2 ? "the zero convention" : "g_idx")
                                                            << " made no difference";
  }
  MoeRunOptions dec;
  dec.variant = "decode";
  EXPECT_FALSE(op.decode_applies(1, 2, {}));
  try {
    run_moe(op, m, 1, 2, DType::kF16, 1, dec);
    ADD_FAILURE() << "int8 experts took the decode path";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("decode path does not apply: int8 experts"), std::string::npos) << e.what();
  }
  {
    test::ScopedEnv env("CLQ_VARIANT", "fused_moe=decode");
    EXPECT_THROW(run_moe(op, m, 1, 2, DType::kF16, 1, {}), Error);
  }
  test::ScopedEnv env("CLQ_VARIANT", "fused_moe=general");
  MoeRun g = run_moe(op, m, 4, 2, DType::kF16, test::seed() + 72, {});
  EXPECT_EQ(g.row, "general");
  EXPECT_EQ(g.y, r.y);
}

// Shared experts of int8 kind run beside int8 routed ones through MoeBlock's machinery: the
// FusedMoe of the shared block alone (E = 1, top-1, weight 1) matches its reference.
TEST(MoeInt8, SharedExpertBlock) {
  auto& c = test::ctx();
  MoeSynthSpec s = int8_spec(W4Format::kGptqV2, 256, 128, 64, false, test::seed() + 81);
  s.shared_I = 256;
  MoeSynth syn(s);
  ASSERT_TRUE(syn.checkpoint().shared);
  const MoeCheckpoint& sh = *syn.checkpoint().shared;
  EXPECT_EQ(sh.kind, MoeWeightKind::kInt8);
  FusedMoe op(c, sh);
  const std::vector<int> ids(7, 0);
  MoeRun r = run_moe(op, sh, 7, 1, DType::kBF16, test::seed() + 82, {}, &ids);
  expect_matches(r, sh, 7, 1, DType::kBF16);
}

// ---- loader --------------------------------------------------------------------------------------

namespace {
struct Folder {
  std::string path;
  explicit Folder(const std::string& tag) : path(test::temp_dir(tag)) {}
  ~Folder() { std::filesystem::remove_all(path); }
  void write(const MoeSynth& syn, const std::string& P) const {
    SafetensorsWriter w;
    syn.add_to(w, P);
    w.write(path + "/model.safetensors");
  }
  void text(const std::string& name, const std::string& s) const { std::ofstream(path + "/" + name) << s; }
};

void expect_refused(const std::function<void()>& f, Status st, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "accepted; wanted a refusal naming: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), st) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

// GPTQ 8-bit experts (Qwen-MoE names) from quantize_config.json (bits 8) and from config.json's
// quantization_config; compressed-tensors int8 experts (Mixtral names) from config.json. The
// loaded layer equals the synthesized one and runs; the width is never guessed.
TEST(MoeInt8, LoaderReadsGptqAndCompressedTensorsFolders) {
  auto& c = test::ctx();
  const std::string P = "model.layers.2.mlp";
  {
    MoeSynthSpec s = int8_spec(W4Format::kGptqV2, 256, 128, 64, true, test::seed() + 91);
    s.E = 4;
    MoeSynth syn(s);
    Folder d("moe-int8-gptq");
    d.write(syn, P);
    // Without a config the 8-bit width is not guessed: v1 and v2 cannot be told apart either.
    expect_refused([&] { load_moe(d.path, P); }, Status::kInvalidArgument, "gptq_v2");
    // Read as 4-bit (the default width) the shapes disagree, and the message names them.
    EXPECT_THROW(load_moe(d.path, P, LoadOptions{"gptq_v2", 0}), Error);
    LoadOptions eight{"gptq_v2", 0};
    eight.bits = 8;
    MoeLayer byopt = load_moe(d.path, P, eight);
    EXPECT_EQ(byopt.moe.kind, MoeWeightKind::kInt8);
    d.text("quantize_config.json", syn.quantize_config_json());
    MoeLayer l = load_moe(d.path, P);
    EXPECT_EQ(l.moe.kind, MoeWeightKind::kInt8);
    EXPECT_EQ(l.moe.E, 4);
    EXPECT_EQ(l.moe.H, 256);
    EXPECT_EQ(l.moe.I, 128);
    EXPECT_TRUE(l.moe.validated);
    EXPECT_TRUE(moe_uses_act_order(l.moe));
    EXPECT_EQ(l.moe.down_q[3].format, W4Format::kGptqV2);
    EXPECT_EQ(l.moe.down_q[3].bits, 8);
    EXPECT_NE(l.format_source.find("quantize_config.json"), std::string::npos) << l.format_source;
    for (int p = 0; p < 3; ++p) EXPECT_EQ(moe_dequantize(l.moe, 3, p), moe_dequantize(syn.checkpoint(), 3, p));
    FusedMoe op(c, l.moe);
    MoeRun r = run_moe(op, l.moe, 5, 2, DType::kBF16, test::seed() + 92, {});
    expect_matches(r, l.moe, 5, 2, DType::kBF16);
    // The same settings as config.json's quantization_config (transformers' GPTQ export).
    std::filesystem::remove(d.path + "/quantize_config.json");
    d.text("config.json", R"({"model_type": "qwen2_moe", "num_experts_per_tok": 2, "quantization_config": )" +
                              syn.quantize_config_json() + "}");
    MoeLayer l2 = load_moe(d.path, P);
    EXPECT_EQ(l2.moe.kind, MoeWeightKind::kInt8);
    ASSERT_TRUE(l2.config);
    EXPECT_EQ(l2.config->top_k.value_or(0), 2);
    // AWQ at 8 bits is no format.
    LoadOptions awq8{"awq", 0};
    awq8.bits = 8;
    expect_refused([&] { load_moe(d.path, P, awq8); }, Status::kNotSupported, "AWQ");
    LoadOptions six{"", 0};
    six.bits = 6;
    expect_refused([&] { load_moe(d.path, P, six); }, Status::kInvalidArgument, "not 6");
  }
  {
    MoeSynthSpec s = int8_spec(W4Format::kCompressedTensors, 256, 128, -1, false, test::seed() + 93);
    s.E = 4;
    s.symmetric = true;
    s.mixtral_names = true;
    MoeSynth syn(s);
    Folder d("moe-int8-ct");
    d.write(syn, P);
    // The I8 weights say format and width; no config is needed (channel scales: [N, 1]).
    MoeLayer bare = load_moe(d.path, P);
    EXPECT_EQ(bare.moe.kind, MoeWeightKind::kInt8);
    EXPECT_NE(bare.format_source.find("I8"), std::string::npos) << bare.format_source;
    d.text("config.json", R"({"model_type": "mixtral", "num_experts_per_tok": 2, "quantization_config": )" +
                              syn.quantize_config_json() + "}");
    MoeLayer l = load_moe(d.path, P);
    EXPECT_EQ(l.moe.kind, MoeWeightKind::kInt8);
    EXPECT_EQ(l.moe.gate_q[2].format, W4Format::kCompressedTensors);
    EXPECT_EQ(validate_w4(l.moe.down_q[1]).group_size, -1);
    EXPECT_NE(l.format_source.find("config.json"), std::string::npos) << l.format_source;
    for (int p = 0; p < 3; ++p) EXPECT_EQ(moe_dequantize(l.moe, 1, p), moe_dequantize(syn.checkpoint(), 1, p));
    ASSERT_TRUE(l.config);
    EXPECT_TRUE(l.config->renormalize);
    FusedMoe op(c, l.moe);
    MoeRun r = run_moe(op, l.moe, 3, 2, DType::kF16, test::seed() + 94, {});
    expect_matches(r, l.moe, 3, 2, DType::kF16);
    // A GPTQ format option, or a 4-bit width, contradicts the I8 tensors.
    expect_refused([&] { load_moe(d.path, P, LoadOptions{"gptq", 0}); }, Status::kInvalidArgument,
                   "compressed-tensors int8 experts");
    LoadOptions four{"", 0};
    four.bits = 4;
    expect_refused([&] { load_moe(d.path, P, four); }, Status::kInvalidArgument, "8-bit, not 4");
    // A W8A8 config (int8 activations per token) is not these experts' numerics: refused.
    Folder d8("moe-int8-w8a8");
    d8.write(syn, P);
    W4SynthSpec ws;
    ws.format = W4Format::kCompressedTensors;
    ws.bits = 8;
    ws.ct_int_quantized = true;
    ws.symmetric = true;
    ws.group_size = -1;
    ws.w8a8_config = true;
    d8.text("config.json", R"({"quantization_config": )" + W4Synth(ws).quantize_config_json() + "}");
    expect_refused([&] { load_moe(d8.path, P); }, Status::kNotSupported, "W8A8");
  }
}

// Bad int8 experts are refused before anything is uploaded, naming the rule and the values.
TEST(MoeInt8, BadExpertsRefused) {
  auto& c = test::ctx();
  MoeSynth syn(int8_spec(W4Format::kGptq, 256, 128, 64, false, test::seed() + 101));
  auto refused = [&](const MoeCheckpoint& m, Status st, const std::string& needle) {
    MoeCheckpoint copy = m;
    copy.validated = false;
    expect_refused([&] { FusedMoe op(c, copy); }, st, needle);
  };
  {
    // An expert whose codes are declared 4-bit inside an int8 layer.
    MoeCheckpoint m = syn.checkpoint();
    m.up_q[3].bits = 4;
    refused(m, Status::kInvalidArgument, "expert 3 up_proj has 4-bit codes but the layer's experts are int8");
  }
  {
    // A format other than expert 0's.
    MoeCheckpoint m = syn.checkpoint();
    m.down_q[2].format = W4Format::kGptqV2;
    refused(m, Status::kInvalidArgument, "expert 2 down_proj is gptq_v2 but expert 0 is gptq");
  }
  {
    // scales with a group row short: disagrees with K and the group size.
    MoeCheckpoint m = syn.checkpoint();
    StTensor sc = *m.gate_q[5].scales;
    sc.shape[0] -= 1;
    m.gate_q[5].scales = &sc;
    refused(m, Status::kInvalidShape, "scales");
  }
  {
    // qzeros packed with the wrong width (as 4-bit zeros would be: N / 8 columns).
    MoeCheckpoint m = syn.checkpoint();
    StTensor qz = *m.down_q[1].qzeros;
    qz.shape[1] /= 2;
    m.down_q[1].qzeros = &qz;
    refused(m, Status::kInvalidShape, "qzeros");
  }
  {
    // A NaN scale.
    MoeCheckpoint m = syn.checkpoint();
    StTensor sc = *m.up_q[0].scales;
    std::vector<uint8_t> data(sc.data, sc.data + sc.nbytes);
    data[2 * 7] = 0xFF, data[2 * 7 + 1] = 0x7E;  // fp16 NaN at element 7
    sc.data = data.data();
    m.up_q[0].scales = &sc;
    refused(m, Status::kInvalidArgument, "is NaN");
  }
  {
    // An expert of another intermediate size.
    MoeSynth other(int8_spec(W4Format::kGptq, 256, 144, 16, false, test::seed() + 102));
    MoeCheckpoint m = syn.checkpoint();
    m.down_q[6] = other.checkpoint().down_q[6];
    refused(m, Status::kInvalidShape, "expert 6 down_proj is K=144 x N=256, expected K=128 x N=256");
  }
  {
    // K not a multiple of the group size without a g_idx (reading past the last group row).
    MoeSynthSpec s = int8_spec(W4Format::kGptq, 256, 128, 64, false, test::seed() + 103);
    MoeSynth g(s);
    MoeCheckpoint m = g.checkpoint();
    for (auto* v : {&m.gate_q, &m.up_q, &m.down_q})
      for (W4Checkpoint& w : *v) w.group_size = 48;
    refused(m, Status::kInvalidShape, "group");
  }
  {
    // Act-order with gate and up in different orders.
    MoeSynth a(int8_spec(W4Format::kGptq, 232, 144, 34, true, test::seed() + 104));
    MoeCheckpoint m = a.checkpoint();
    m.up_q[4] = a.checkpoint().up_q[5];
    m.gate_q[4] = a.checkpoint().gate_q[4];
    refused(m, Status::kNotSupported, "expert 4: gate_proj and up_proj have different g_idx");
  }
}
