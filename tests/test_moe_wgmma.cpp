// fused_moe/nv_wgmma (prefill on sm_90a wgmma, kernels_cl/moe/nv_wgmma.cl) against the fp64
// reference: bf16 and fp16 experts, shapes whose K and columns are not whole 64-column chunks or
// 128-column tiles (the padded activations, clamped weight pieces, a's zero columns), blocks of
// 128 slots from one token up to several blocks per expert, experts with no tokens, many experts
// with top-6, the caller's routing, an expert map. Where the device has no wgmma probe, the
// forced row is refused with the rule and the table never picks it.
#include <gtest/gtest.h>

#include <string>

#include "host/caps/caps.h"
#include "host/ops/moe/fused_moe.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/moe_test_util.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

MoeSynthSpec wg_spec(DType dt, int64_t E, int64_t H, int64_t I, uint64_t seed) {
  MoeSynthSpec s;
  s.kind = MoeWeightKind::kDense;
  s.dense_dtype = dt;
  s.E = E;
  s.H = H;
  s.I = I;
  s.seed = seed;
  return s;
}

void expect_close(const MoeCheckpoint& m, const test::MoeRun& r, int64_t T, int k, DType dt,
                  const std::vector<int>& expert_map = {}) {
  const auto refs = moe_reference_alternatives(m, r.x.data(), dt, T, r.ids, r.w, k, expert_map);
  ErrorStats e = test::compare_moe(r.y, dt, refs);
  EXPECT_EQ(e.nan_count, 0u);
  EXPECT_LT(e.max_abs_err, MoeProblem::kMaxAbsTolerance);
  EXPECT_LT(e.rel_mean(), MoeProblem::kRelTolerance) << "max abs err " << e.max_abs_err;
}

MoeRunOptions forced() {
  MoeRunOptions o;
  o.variant = "nv_wgmma";
  return o;
}

}  // namespace

TEST(MoeWgmma, RefusedWithoutTheProbeAndNeverPicked) {
  auto& c = test::ctx();
  MoeSynth syn(wg_spec(DType::kBF16, 8, 256, 128, test::seed() + 60));
  FusedMoe op(c, syn.checkpoint());
  if (c.features().nv_wgmma) {
    // A refusal on a device that has it: activations of another dtype than the experts'.
    auto x = random_activations(300, 256, DType::kF16, 1);
    cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
    c.write(dx, x.data(), x.size());
    MoeRouting r;
    try {
      op.run(dx, DType::kF16, dy, DType::kF16, 300, r, forced());
      FAIL() << "fp16 activations with bf16 experts took the nv_wgmma path";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("must match"), std::string::npos) << e.what();
    }
    // Without a forced row the table's choice gives way to the general path.
    EXPECT_STREQ(op.run(dx, DType::kF16, dy, DType::kF16, 300, r).row->variant, "general");
    return;
  }
  EXPECT_STRNE(op.choose(4096, 2).variant, "nv_wgmma");
  auto x = random_activations(4, 256, DType::kBF16, 1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  MoeRouting r;
  try {
    op.run(dx, DType::kBF16, dy, DType::kBF16, 4, r, forced());
    FAIL() << "the nv_wgmma path ran without the probe";
  } catch (const Error& e) {
    // The table refuses the row before its launcher is asked: it names the missing features.
    EXPECT_NE(std::string(e.what()).find("needs nv_mma_f16+nv_wgmma"), std::string::npos) << e.what();
  }
}

TEST(MoeWgmma, DenseExpertsAgainstFp64) {
  auto& c = test::ctx();
  if (!c.features().nv_wgmma) GTEST_SKIP() << "no nv_wgmma probe on this device (refusal tested above)";
  struct Shape {
    int64_t E, H, I;
    int k;
  };
  // H = 272 and I = 208: K of neither GEMM is whole 64-row chunks (padded x, a's zero columns),
  // and neither column count whole 128-column tiles (clamped pieces, unstored columns).
  for (const Shape& sh : {Shape{8, 256, 128, 2}, Shape{8, 272, 208, 2}, Shape{64, 128, 64, 6}, Shape{128, 256, 192, 8}})
    for (DType dt : {DType::kBF16, DType::kF16}) {
      MoeSynth syn(wg_spec(dt, sh.E, sh.H, sh.I, test::seed() + 61 + uint64_t(sh.H)));
      FusedMoe op(c, syn.checkpoint());
      // One token (blocks that are nearly all padding), ragged counts, several blocks per expert.
      for (int64_t T : {1, 45, 300}) {
        SCOPED_TRACE("E=" + std::to_string(sh.E) + " H=" + std::to_string(sh.H) + " I=" + std::to_string(sh.I) +
                     " T=" + std::to_string(T) + " " + dtype_name(dt));
        test::MoeRun r = test::run_moe(op, syn.checkpoint(), T, sh.k, dt, test::seed() + uint64_t(T), forced());
        EXPECT_EQ(r.row, "nv_wgmma");
        expect_close(syn.checkpoint(), r, T, sh.k, dt);
      }
    }
}

TEST(MoeWgmma, CallersRoutingOneExpertAndExpertMap) {
  auto& c = test::ctx();
  if (!c.features().nv_wgmma) GTEST_SKIP() << "no nv_wgmma probe on this device (refusal tested above)";
  MoeSynth syn(wg_spec(DType::kBF16, 8, 256, 192, test::seed() + 70));
  FusedMoe op(c, syn.checkpoint());
  const int64_t T = 260;
  // Every token to expert 5 first (three blocks of one expert, the last one ragged), then to
  // 3 and 6.
  std::vector<int> ids(size_t(T * 2));
  for (int64_t t = 0; t < T; ++t) {
    ids[size_t(2 * t)] = 5;
    ids[size_t(2 * t + 1)] = t % 3 == 0 ? 3 : 6;
  }
  test::MoeRun r = test::run_moe(op, syn.checkpoint(), T, 2, DType::kBF16, test::seed() + 71, forced(), &ids);
  EXPECT_EQ(r.row, "nv_wgmma");
  expect_close(syn.checkpoint(), r, T, 2, DType::kBF16);
  // Experts 0..3 local: the others' slots contribute nothing.
  MoeRunOptions o = forced();
  o.expert_map = {0, 1, 2, 3, -1, -1, -1, -1};
  test::MoeRun rm = test::run_moe(op, syn.checkpoint(), 150, 3, DType::kBF16, test::seed() + 72, o);
  EXPECT_EQ(rm.row, "nv_wgmma");
  expect_close(syn.checkpoint(), rm, 150, 3, DType::kBF16, o.expert_map);
}

// At prefill sizes the table picks this row for 16-bit experts (a forced call is not needed).
TEST(MoeWgmma, TheTablePicksItAtPrefill) {
  auto& c = test::ctx();
  if (!c.features().nv_wgmma) GTEST_SKIP() << "no nv_wgmma probe on this device";
  MoeSynth syn(wg_spec(DType::kBF16, 8, 256, 128, test::seed() + 80));
  FusedMoe op(c, syn.checkpoint());
  EXPECT_STREQ(op.choose(4096, 2).variant, "nv_wgmma");
  EXPECT_STREQ(op.choose(8, 2).variant, "decode");
  test::MoeRun r = test::run_moe(op, syn.checkpoint(), 512, 2, DType::kBF16, test::seed() + 81, {});
  EXPECT_EQ(r.row, "nv_wgmma");
  expect_close(syn.checkpoint(), r, 512, 2, DType::kBF16);
}
