// Fused MoE with the quantization details real checkpoints carry (issue 14): int4 experts with
// GPTQ act-order (a g_idx per expert and projection, SPEC section 2), and FP8 experts with
// ue8m0 activation scales (config.json scale_fmt) and F8_E8M0 weight scales. Each against the
// fp64 reference computed from the checkpoint as stored, on every fused_moe path that takes it,
// outputs poisoned first; and checks that the feature is really exercised (a reference that
// ignores it does not match).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "host/formats/loader.h"
#include "host/formats/moe.h"
#include "host/ops/moe/fused_moe.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/moe_test_util.h"
#include "tests/test_util.h"

using namespace clq;
using clq::test::compare_moe;
using clq::test::MoeRun;
using clq::test::run_moe;

namespace {


// Act-order int4 experts, the subject of this file's int4 tests.
MoeSynthSpec int4_spec(W4Format f, int64_t H, int64_t I, int gs, uint64_t seed) {
  return test::int_experts_spec(MoeWeightKind::kInt4, f, H, I, gs, /*act_order=*/true, seed);
}

// The same layer with every g_idx taken away: what a path that ignored act-order would compute.
struct WithoutGidx {
  explicit WithoutGidx(const MoeCheckpoint& m) : ck(m) {
    for (auto* v : {&ck.gate_q, &ck.up_q, &ck.down_q})
      for (W4Checkpoint& w : *v) w.g_idx = nullptr;
    ck.validated = false;
  }
  MoeCheckpoint ck;
};

}  // namespace

// Act-order experts through the general path (the decode path takes no int4 experts: the
// dispatcher sends them to general, and forcing decode is refused naming the rule). Shapes: one
// aligned (H 256, I 128, groups of 64) and one awkward (H 232, I 144, groups of 36, which pad
// inside every group and leave a short last group); top-2 and top-3; T = 1, 5 and 33 (> 16, so
// blocks of several rows); the router's own choice and host ids where tokens share experts;
// split-K; an expert map.
TEST(MoeActOrder, Int4ExpertsAgainstFp64) {
  auto& c = test::ctx();
  struct Shape {
    int64_t H, I;
    int gs;
  };
  for (W4Format f : {W4Format::kGptq, W4Format::kGptqV2})
    for (Shape sh : {Shape{256, 128, 64}, Shape{232, 144, 36}}) {
      MoeSynth syn(int4_spec(f, sh.H, sh.I, sh.gs, test::seed() + uint64_t(sh.H)));
      const MoeCheckpoint& m = syn.checkpoint();
      ASSERT_NE(m.gate_q[1].g_idx, nullptr);
      for (const char* tuning : {"cpu", "gpu"}) {
        test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
        FusedMoe op(c, m);
        for (int k : {2, 3})
          for (int64_t T : {1, 5, 33}) {
            SCOPED_TRACE(std::string(w4_format_name(f)) + " H=" + std::to_string(sh.H) + " I=" +
                         std::to_string(sh.I) + " k=" + std::to_string(k) + " T=" + std::to_string(T) + " " + tuning +
                         " seed " + std::to_string(test::seed()));
            for (const char* path : {"", "general"}) {
              MoeRunOptions o;
              o.variant = path;
              MoeRun r = run_moe(op, m, T, k, DType::kF16, test::seed() + uint64_t(T * 10 + k), o);
              EXPECT_EQ(r.row, "general");
              ErrorStats e = compare_output(r.y.data(), DType::kF16,
                                            moe_reference(m, r.x.data(), DType::kF16, T, r.ids, r.w, k));
              EXPECT_TRUE(MoeProblem::within_tolerance(e))
                  << "max abs " << e.max_abs_err << " rel mean " << e.rel_mean() << " NaN " << e.nan_count;
            }
          }
        // Tokens that share experts (expert 6 three times, 1 and 3 twice), split-K, small blocks.
        const std::vector<int> ids = {6, 1, 6, 3, 1, 6, 6, 3, 2, 1};
        for (int splits : {1, 3})
          for (int bs : {1, 4}) {
            MoeRunOptions o;
            o.splits = splits;
            o.block_size = bs;
            MoeRun r = run_moe(op, m, 5, 2, DType::kBF16, test::seed() + uint64_t(splits * 7 + bs), o, &ids);
            ErrorStats e =
                compare_output(r.y.data(), DType::kBF16, moe_reference(m, r.x.data(), DType::kBF16, 5, ids, r.w, 2));
            EXPECT_TRUE(MoeProblem::within_tolerance(e)) << "splits " << splits << " bs " << bs << ": max abs "
                                                         << e.max_abs_err << " rel mean " << e.rel_mean();
          }
        MoeRunOptions ep;
        ep.expert_map = {0, 1, 2, 3, -1, -1, -1, -1};
        MoeRun r = run_moe(op, m, 9, 3, DType::kF16, test::seed() + 99, ep);
        ErrorStats e = compare_output(r.y.data(), DType::kF16,
                                      moe_reference(m, r.x.data(), DType::kF16, 9, r.ids, r.w, 3, ep.expert_map));
        EXPECT_TRUE(MoeProblem::within_tolerance(e)) << "expert map: max abs " << e.max_abs_err;
      }
    }
}

// The permutations are really applied: with g_idx dropped (the layer a kernel ignoring act-order
// would compute) the reference is far from the device output; and forcing the decode path is
// refused with its rule.
TEST(MoeActOrder, PermutationMattersAndDecodeIsRefused) {
  auto& c = test::ctx();
  MoeSynth syn(int4_spec(W4Format::kGptq, 256, 128, 64, test::seed() + 3));
  const MoeCheckpoint& m = syn.checkpoint();
  FusedMoe op(c, m);
  MoeRun r = run_moe(op, m, 4, 2, DType::kF16, test::seed() + 4, {});
  ErrorStats good =
      compare_output(r.y.data(), DType::kF16, moe_reference(m, r.x.data(), DType::kF16, 4, r.ids, r.w, 2));
  EXPECT_TRUE(MoeProblem::within_tolerance(good)) << good.max_abs_err;
  WithoutGidx plain(m);
  ErrorStats ignored = compare_output(r.y.data(), DType::kF16,
                                      moe_reference(plain.ck, r.x.data(), DType::kF16, 4, r.ids, r.w, 2));
  EXPECT_GT(ignored.rel_mean(), 100 * MoeProblem::kRelTolerance) << "the g_idx made no difference";
  MoeRunOptions dec;
  dec.variant = "decode";
  try {
    run_moe(op, m, 1, 2, DType::kF16, 1, dec);
    ADD_FAILURE() << "int4 act-order experts took the decode path";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("decode path does not apply: int4 experts"), std::string::npos) << e.what();
  }
  // CLQ_VARIANT forces the same way.
  test::ScopedEnv env("CLQ_VARIANT", "fused_moe=general");
  MoeRun g = run_moe(op, m, 4, 2, DType::kF16, test::seed() + 4, {});
  EXPECT_EQ(g.row, "general");
  EXPECT_EQ(g.y, r.y);
}

// A g_idx that is the trivial k / group_size (written out, as some GPTQ exports do without
// act-order) takes the old path: bit-identical output to the same layer without g_idx.
TEST(MoeActOrder, TrivialGidxIsBitIdenticalToNone) {
  auto& c = test::ctx();
  MoeSynthSpec s = int4_spec(W4Format::kGptq, 256, 128, 64, test::seed() + 5);
  s.act_order = false;
  MoeSynth syn(s);
  const MoeCheckpoint& plain = syn.checkpoint();
  MoeCheckpoint with = plain;
  std::vector<std::vector<int32_t>> gi;
  std::vector<StTensor> gt;
  gi.reserve(3 * size_t(with.E));
  gt.reserve(3 * size_t(with.E));
  for (auto* v : {&with.gate_q, &with.up_q, &with.down_q})
    for (W4Checkpoint& w : *v) {
      const int64_t K = w.qweight->shape[0] * 8;
      gi.emplace_back(size_t(K));
      for (int64_t k = 0; k < K; ++k) gi.back()[size_t(k)] = int32_t(k / 64);
      StTensor t;
      t.name = "g_idx";
      t.dtype = StDType::kI32;
      t.shape = {K};
      t.data = reinterpret_cast<const uint8_t*>(gi.back().data());
      t.nbytes = size_t(K) * 4;
      gt.push_back(t);
      w.g_idx = &gt.back();
    }
  with.validated = false;
  FusedMoe a(c, plain), b(c, with);
  MoeRun ra = run_moe(a, plain, 7, 2, DType::kF16, test::seed() + 6, {});
  MoeRun rb = run_moe(b, with, 7, 2, DType::kF16, test::seed() + 6, {});
  EXPECT_EQ(ra.y, rb.y);
}

// Bad act-order input is refused at load, naming the rule and the values, before any upload.
TEST(MoeActOrder, BadGidxRefused) {
  auto& c = test::ctx();
  MoeSynth syn(int4_spec(W4Format::kGptq, 256, 128, 64, test::seed() + 7));
  auto expect_refused = [&](const MoeCheckpoint& m, Status st, const std::string& needle) {
    try {
      FusedMoe op(c, m);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), st) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto copy_gidx = [](const W4Checkpoint& w, std::vector<int32_t>* data, StTensor* t) {
    *t = *w.g_idx;
    data->resize(size_t(t->shape[0]));
    std::memcpy(data->data(), t->data, t->nbytes);
    t->data = reinterpret_cast<const uint8_t*>(data->data());
  };
  {
    // Gate and up of expert 2 in different orders (two rows of up's g_idx swapped).
    MoeCheckpoint m = syn.checkpoint();
    m.validated = false;
    std::vector<int32_t> d;
    StTensor t;
    copy_gidx(m.up_q[2], &d, &t);
    int64_t j = 1;
    while (d[size_t(j)] == d[0]) ++j;
    std::swap(d[0], d[size_t(j)]);
    m.up_q[2].g_idx = &t;
    expect_refused(m, Status::kNotSupported, "expert 2: gate_proj and up_proj have different g_idx");
  }
  {
    // Expert 5's down g_idx moves a row from one group to another: group sizes differ from expert 0.
    MoeCheckpoint m = syn.checkpoint();
    m.validated = false;
    std::vector<int32_t> d;
    StTensor t;
    copy_gidx(m.down_q[5], &d, &t);
    d[3] = (d[3] + 1) % 2;
    m.down_q[5].g_idx = &t;
    expect_refused(m, Status::kNotSupported, "expert 5 down_proj: g_idx puts");
  }
  {
    // A g_idx value outside [0, G) (validate_w4's rule, reached through validate_moe).
    MoeCheckpoint m = syn.checkpoint();
    m.validated = false;
    std::vector<int32_t> d;
    StTensor t;
    copy_gidx(m.gate_q[4], &d, &t);
    d[10] = 4;  // G = 256 / 64 = 4
    m.gate_q[4].g_idx = &t;
    expect_refused(m, Status::kInvalidArgument, "g_idx[10] = 4 is outside [0, 4)");
  }
}

// ---- FP8 experts: ue8m0 activation scales, F8_E8M0 weight scales ------------------------------

namespace {
MoeSynthSpec fp8_spec(int64_t H, bool e8m0_weights, bool ue8m0_act, uint64_t seed) {
  MoeSynthSpec s;
  s.kind = MoeWeightKind::kFp8;
  s.E = 8;
  s.H = H;
  s.I = 128;
  s.fp8_e8m0_scales = e8m0_weights;
  s.ue8m0_act_scales = ue8m0_act;
  s.seed = seed;
  return s;
}
}  // namespace

// ue8m0 activation scales on both paths against the fp64 reference that rounds its scales the
// same way; the reference without the rounding does not match (so the flag is not ignored).
// H = 320: a ragged last activation group of 64 columns.
TEST(MoeUe8m0, Fp8ExpertsAgainstFp64BothPaths) {
  auto& c = test::ctx();
  for (bool e8m0_weights : {false, true}) {
    MoeSynth syn(fp8_spec(320, e8m0_weights, true, test::seed() + 21 + e8m0_weights));
    const MoeCheckpoint& m = syn.checkpoint();
    ASSERT_TRUE(m.ue8m0_act_scales);
    MoeCheckpoint off = m;
    off.ue8m0_act_scales = false;
    FusedMoe op(c, m);
    for (const char* path : {"general", "decode"})
      for (int64_t T : {1, 5, 40}) {
        SCOPED_TRACE(std::string(path) + " T=" + std::to_string(T) + " e8m0 weights " + std::to_string(e8m0_weights) +
                     " seed " + std::to_string(test::seed()));
        MoeRunOptions o;
        o.variant = path;
        MoeRun r = run_moe(op, m, T, 2, DType::kBF16, test::seed() + uint64_t(T), o);
        EXPECT_EQ(r.row, path);
        ErrorStats e =
            compare_moe(r.y, DType::kBF16, moe_reference_alternatives(m, r.x.data(), DType::kBF16, T, r.ids, r.w, 2));
        EXPECT_TRUE(MoeProblem::within_tolerance(e))
            << "max abs " << e.max_abs_err << " rel mean " << e.rel_mean() << " NaN " << e.nan_count;
        ErrorStats wrong =
            compare_moe(r.y, DType::kBF16, moe_reference_alternatives(off, r.x.data(), DType::kBF16, T, r.ids, r.w, 2));
        EXPECT_FALSE(MoeProblem::within_tolerance(wrong)) << "ue8m0 made no difference: " << wrong.rel_mean();
      }
    // And the layer without the flag still matches its own reference (the flag is per layer).
    FusedMoe plain(c, off);
    for (const char* path : {"general", "decode"}) {
      MoeRunOptions o;
      o.variant = path;
      MoeRun r = run_moe(plain, off, 5, 2, DType::kBF16, test::seed() + 50, o);
      ErrorStats e =
          compare_moe(r.y, DType::kBF16, moe_reference_alternatives(off, r.x.data(), DType::kBF16, 5, r.ids, r.w, 2));
      EXPECT_TRUE(MoeProblem::within_tolerance(e)) << path << ": " << e.rel_mean();
    }
  }
}

// F8_E8M0 weight scales of FP8 experts go through the dense FP8 reader (validate_fp8 /
// repack_fp8): the decoded scales are powers of two and the layer matches the reference.
TEST(MoeUe8m0, E8m0WeightScalesLoad) {
  auto& c = test::ctx();
  MoeSynth syn(fp8_spec(256, true, false, test::seed() + 31));
  const MoeCheckpoint& m = syn.checkpoint();
  ASSERT_EQ(m.down_f[3].weight_scale_inv->dtype, StDType::kF8E8M0);
  const Fp8Shape s = validate_fp8(m.down_f[3]);
  for (int64_t nb = 0; nb < s.Nb; ++nb)
    for (int64_t kb = 0; kb < s.Kb; ++kb) {
      const float v = fp8_weight_scale(m.down_f[3], s, nb, kb);
      int ex = 0;
      EXPECT_EQ(std::frexp(v, &ex), 0.5f) << v;
    }
  FusedMoe op(c, m);
  for (const char* path : {"general", "decode"}) {
    MoeRunOptions o;
    o.variant = path;
    MoeRun r = run_moe(op, m, 6, 2, DType::kBF16, test::seed() + 32, o);
    ErrorStats e = compare_moe(r.y, DType::kBF16, moe_reference_alternatives(m, r.x.data(), DType::kBF16, 6, r.ids, r.w, 2));
    EXPECT_TRUE(MoeProblem::within_tolerance(e)) << path << ": " << e.rel_mean();
  }
}

// load_moe carries config.json's scale_fmt: ue8m0 into the layer (routed and shared experts).
TEST(MoeUe8m0, LoaderCarriesScaleFmt) {
  const std::string dir = test::temp_dir("moe-ue8m0");
  MoeSynthSpec s = fp8_spec(256, true, false, test::seed() + 41);
  s.shared_I = 256;
  MoeSynth syn(s);
  SafetensorsWriter w;
  syn.add_to(w, "model.layers.1.mlp");
  w.write(dir + "/model.safetensors");
  MoeLayer plain = load_moe(dir, "model.layers.1.mlp");
  EXPECT_FALSE(plain.moe.ue8m0_act_scales);
  std::ofstream(dir + "/config.json")
      << R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}})";
  MoeLayer l = load_moe(dir, "model.layers.1.mlp");
  EXPECT_TRUE(l.moe.ue8m0_act_scales);
  ASSERT_TRUE(l.moe.shared);
  EXPECT_TRUE(l.moe.shared->ue8m0_act_scales);
  std::filesystem::remove_all(dir);
}
