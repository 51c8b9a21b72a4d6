// Fused MoE (SPEC sections 5 and 6): routing against its host twin (ties to the lower id),
// alignment, and the whole layer against an fp64 dense reference for each weight kind; experts
// with no tokens, every token to one expert, identical tokens, expert parallelism, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>

#include "host/caps/caps.h"
#include "host/formats/moe.h"
#include "host/ops/moe/fused_moe.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/moe_test_util.h"
#include "tests/test_util.h"

using namespace clq;
using clq::test::compare_moe;
using clq::test::grid_logits;

namespace {


struct Device {
  cl::Buffer x, y, logits;
};


void check_layer(FusedMoe& op, const MoeCheckpoint& m, int64_t T, const MoeRouting& r, DType dt, uint64_t seed,
                 const MoeRunOptions& o = {}, const std::vector<float>* logits_in = nullptr) {
  SCOPED_TRACE(std::string(moe_kind_name(m.kind)) + " T=" + std::to_string(T) + " E=" + std::to_string(m.E) +
               " k=" + std::to_string(r.top_k) + " seed " + std::to_string(seed));
  auto& c = test::ctx();
  auto x = random_activations(T, m.H, dt, seed);
  std::vector<float> logits = logits_in ? *logits_in : grid_logits(T, m.E, seed + 1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(T * m.H) * dtype_size(dt)), dl = c.alloc(logits.size() * 4);
  c.write(dx, x.data(), x.size());
  c.write(dl, logits.data(), logits.size() * 4);
  c.fill_u32(dy, 0xFFFFFFFFu, size_t(T * m.H) * dtype_size(dt));
  op.run(dx, dt, dy, dt, T, r, o, &dl);
  std::vector<int> ids, hids;
  std::vector<float> w, hw;
  op.read_routing(&ids, &w);
  const float* bias = m.bias ? reinterpret_cast<const float*>(m.bias->data) : nullptr;
  moe_route_host(logits, T, m.E, r, bias, &hids, &hw);
  ASSERT_EQ(ids, hids) << "routing decisions differ from the host twin";
  for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(w[i], hw[i], 1e-5f * std::max(1.0f, std::fabs(hw[i])));
  const auto refs = moe_reference_alternatives(m, x.data(), dt, T, hids, hw, r.top_k, o.expert_map);
  std::vector<uint8_t> y(size_t(T * m.H) * dtype_size(dt));
  c.read(dy, y.data(), y.size());
  ErrorStats e = compare_moe(y, dt, refs);
  EXPECT_EQ(e.nan_count, 0u);
  EXPECT_LT(e.max_abs_err, MoeProblem::kMaxAbsTolerance);
  EXPECT_LT(e.rel_mean(), MoeProblem::kRelTolerance) << "max abs err " << e.max_abs_err;
}

MoeSynthSpec spec(MoeWeightKind k, int64_t E, uint64_t seed) {
  MoeSynthSpec s;
  s.kind = k;
  s.E = E;
  s.H = 256;
  s.I = 128;
  s.seed = seed;
  return s;
}

// DeepSeek-V3's grouped routing scaled down to 16 experts: 4 groups, 2 kept, top-6.
MoeRouting deepseek_like_routing() {
  MoeRouting r;
  r.kind = MoeRouting::Kind::kGrouped;
  r.top_k = 6;
  r.n_group = 4;
  r.topk_group = 2;
  r.renormalize = true;
  r.routed_scaling = 2.5f;
  return r;
}

}  // namespace

TEST(MoeRouting, SoftmaxAndGroupedMatchHostTwin) {
  auto& c = test::ctx();
  for (int64_t E : {8, 64, 256})
    for (int k : {1, 2, 6, 8}) {
      if (k > E) continue;
      MoeSynthSpec s = spec(MoeWeightKind::kDense, E, 3);
      s.H = 64;
      s.I = 16;
      MoeSynth syn(s);
      FusedMoe op(c, syn.checkpoint());
      for (int64_t T : {1, 3, 64, 257}) {
        for (int grouped = 0; grouped < 2; ++grouped) {
          MoeRouting r;
          r.top_k = k;
          r.renormalize = (T + k) % 2 == 0;
          if (grouped) {
            r.kind = MoeRouting::Kind::kGrouped;
            r.n_group = E >= 64 ? 8 : 4;
            r.topk_group = std::max(1, int(r.n_group / 2));
            r.routed_scaling = 2.5f;
            if (k > r.topk_group * (E / r.n_group)) continue;
          }
          auto logits = grid_logits(T, E, uint64_t(T * 1000 + E + k));
          cl::Buffer dl = c.alloc(logits.size() * 4), dx = c.alloc(size_t(T * 64) * 2),
                     dy = c.alloc(size_t(T * 64) * 2);
          c.write(dl, logits.data(), logits.size() * 4);
          auto x = random_activations(T, 64, DType::kBF16, 1);
          c.write(dx, x.data(), x.size());
          op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, {}, &dl);
          std::vector<int> ids, hids;
          std::vector<float> w, hw;
          op.read_routing(&ids, &w);
          moe_route_host(logits, T, E, r, nullptr, &hids, &hw);
          ASSERT_EQ(ids, hids) << "E=" << E << " k=" << k << " T=" << T << " grouped=" << grouped;
          for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(w[i], hw[i], 1e-5f * std::max(1.0f, hw[i]));
        }
      }
    }
}

TEST(MoeRouting, TiesGoToTheLowerExpertId) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 16, 4);
  s.H = 64;
  s.I = 16;
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  const int64_t T = 3;
  std::vector<float> logits(size_t(T * 16), 0.5f);  // every expert tied
  logits[size_t(16 + 9)] = 1.0f;                    // token 1: expert 9 first, then the ties
  cl::Buffer dl = c.alloc(logits.size() * 4), dx = c.alloc(T * 64 * 2), dy = c.alloc(T * 64 * 2);
  c.write(dl, logits.data(), logits.size() * 4);
  c.fill_u32(dx, 0x3F803F80u, T * 64 * 2);
  for (int path = 0; path < 4; ++path) {  // serial kernels, then the decode path's team top-k
    const int grouped = path % 2;
    MoeRouting r;
    r.top_k = 4;
    if (grouped) {
      r.kind = MoeRouting::Kind::kGrouped;
      r.n_group = 4;
      r.topk_group = 2;
    }
    MoeRunOptions o;
    o.decode = path < 2 ? -1 : 1;
    op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, o, &dl);
    std::vector<int> ids;
    std::vector<float> w;
    op.read_routing(&ids, &w);
    EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + 4), (std::vector<int>{0, 1, 2, 3})) << grouped;
    if (!grouped)
      EXPECT_EQ(std::vector<int>(ids.begin() + 4, ids.begin() + 8), (std::vector<int>{9, 0, 1, 2}));
    else
      EXPECT_EQ(std::vector<int>(ids.begin() + 4, ids.begin() + 8),
                (std::vector<int>{9, 0, 1, 2}));  // groups 0 and 2 (9 lifts group 2)
  }
}

TEST(MoeAlign, LayoutPaddingAndEmptyExperts) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 8, 5);
  s.H = 64;
  s.I = 16;
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  // T = 5, k = 2: experts 1, 3 and 6 only; expert 6 takes every token once.
  const int64_t T = 5;
  std::vector<int> ids = {6, 1, 6, 3, 1, 6, 6, 3, 6, 1};
  std::vector<float> w(10, 0.5f);
  auto x = random_activations(T, 64, DType::kBF16, 2);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(T * 64 * 2);
  c.write(dx, x.data(), x.size());
  for (int bs : {1, 2, 4, 16}) {
    MoeRunOptions o;
    o.block_size = bs;
    op.run_routed(dx, DType::kBF16, dy, DType::kBF16, T, ids, w, 2, o);
    std::vector<int> sorted, experts;
    int npp = 0;
    op.read_alignment(&sorted, &experts, &npp);
    std::map<int, int> cnt = {{1, 3}, {3, 2}, {6, 5}};
    int want = 0;
    for (auto& [e, n] : cnt) want += (n + bs - 1) / bs * bs;
    ASSERT_EQ(npp, want) << "bs=" << bs;
    // Runs in expert order, flat indices in increasing order, padded with the sentinel T*k.
    size_t pos = 0;
    for (auto& [e, n] : cnt) {
      std::vector<int> run(sorted.begin() + long(pos), sorted.begin() + long(pos) + n);
      std::vector<int> expect;
      for (int i = 0; i < 10; ++i)
        if (ids[size_t(i)] == e) expect.push_back(i);
      EXPECT_EQ(run, expect) << "expert " << e << " bs " << bs;
      for (int p = n; p < (n + bs - 1) / bs * bs; ++p) EXPECT_EQ(sorted[pos + size_t(p)], 10);
      for (int b = 0; b < (n + bs - 1) / bs; ++b) EXPECT_EQ(experts[pos / size_t(bs) + size_t(b)], e);
      pos += size_t((n + bs - 1) / bs * bs);
    }
  }
}

TEST(MoeAlign, DecodeDoesNotPayForPadding) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 128, 6);
  s.H = 64;
  s.I = 16;
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  EXPECT_EQ(op.block_size_for(1, 8), 1);   // one token, top-8: eight rows, no padding
  EXPECT_EQ(op.block_size_for(16, 8), 1);  // 128 slots over 128 experts
  EXPECT_LE(op.block_size_for(64, 8), 4);
  EXPECT_EQ(op.block_size_for(4096, 8), 16);
}

TEST(MoeLayer, DenseExpertsAgainstFp64) {
  auto& c = test::ctx();
  for (DType dt : {DType::kBF16, DType::kF16}) {
    MoeSynthSpec s = spec(MoeWeightKind::kDense, 8, test::seed());
    s.dense_dtype = dt;
    MoeSynth syn(s);
    FusedMoe op(c, syn.checkpoint());
    MoeRouting r;
    r.top_k = 2;
    r.renormalize = true;
    for (int64_t T : {1, 3, 64}) check_layer(op, syn.checkpoint(), T, r, dt, test::seed() + uint64_t(T));
    MoeRunOptions split;
    split.splits = 3;  // partial sums + reduce epilogues, as on a GPU at decode
    check_layer(op, syn.checkpoint(), 2, r, dt, test::seed() + 77, split);
  }
}

TEST(MoeLayer, Int4ExpertsAgainstFp64) {
  auto& c = test::ctx();
  for (W4Format f : {W4Format::kGptq, W4Format::kAwq}) {
    MoeSynthSpec s = spec(MoeWeightKind::kInt4, 8, test::seed() + 1);
    s.int4_format = f;
    MoeSynth syn(s);
    for (const char* tuning : {"cpu", "gpu"}) {
      test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
      FusedMoe op(c, syn.checkpoint());
      MoeRouting r;
      r.top_k = 2;
      for (int64_t T : {1, 7, 33}) check_layer(op, syn.checkpoint(), T, r, DType::kF16, test::seed() + uint64_t(T));
      MoeRunOptions split;
      split.splits = 3;
      check_layer(op, syn.checkpoint(), 4, r, DType::kF16, test::seed() + 78, split);
    }
  }
}

TEST(MoeLayer, Fp8ExpertsAgainstFp64WithGroupedRouting) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kFp8, 16, test::seed() + 2);
  s.bias = true;  // DeepSeek's e_score_correction_bias: chooses experts, never weights them
  MoeSynth syn(s);
  for (const char* tuning : {"cpu", "gpu"}) {
    test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
    FusedMoe op(c, syn.checkpoint());
    const MoeRouting r = deepseek_like_routing();
    for (int64_t T : {1, 5, 40}) check_layer(op, syn.checkpoint(), T, r, DType::kBF16, test::seed() + uint64_t(T));
    MoeRunOptions split;
    split.splits = 2;
    check_layer(op, syn.checkpoint(), 3, r, DType::kBF16, test::seed() + 79, split);
  }
}

TEST(MoeLayer, EveryTokenToOneExpertAndExpertParallelism) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 8, test::seed() + 3);
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  MoeRouting r;
  r.top_k = 1;
  const int64_t T = 20;
  std::vector<float> logits(size_t(T * 8), 0.0f);
  for (int64_t t = 0; t < T; ++t) logits[size_t(t * 8 + 5)] = 3.0f;  // all to expert 5
  check_layer(op, syn.checkpoint(), T, r, DType::kBF16, test::seed(), {}, &logits);
  // Expert parallelism: experts 0..3 are local; tokens routed elsewhere contribute nothing.
  MoeRunOptions o;
  o.expert_map = {0, 1, 2, 3, -1, -1, -1, -1};
  r.top_k = 3;
  check_layer(op, syn.checkpoint(), 9, r, DType::kBF16, test::seed() + 9, o);
}

TEST(MoeLayer, IdenticalTokensGiveIdenticalOutputs) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kInt4, 8, test::seed() + 4);
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  const int64_t T = 12;
  auto row = random_activations(1, 256, DType::kF16, test::seed());
  std::vector<uint8_t> x;
  for (int64_t t = 0; t < T; ++t) x.insert(x.end(), row.begin(), row.end());
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(T * 256) * 2);
  c.write(dx, x.data(), x.size());
  MoeRouting r;
  r.top_k = 2;
  op.run(dx, DType::kF16, dy, DType::kF16, T, r);  // router weight from the layer
  std::vector<uint16_t> y(size_t(T * 256));
  c.read(dy, y.data(), y.size() * 2);
  for (int64_t t = 1; t < T; ++t)
    for (int n = 0; n < 256; ++n) ASSERT_EQ(y[size_t(t * 256 + n)], y[size_t(n)]) << "token " << t;
}

TEST(MoeBadInput, ClearErrorsBeforeAnythingRuns) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 8, 9);
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  cl::Buffer dx = c.alloc(4 * 256 * 2), dy = c.alloc(4 * 256 * 2);
  c.fill_u32(dy, 0x5A5A5A5Au, 4 * 256 * 2);
  auto expect_fail = [&](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    c.finish();
    std::vector<uint32_t> y(4 * 256 / 2);
    c.read(dy, y.data(), y.size() * 4);
    for (uint32_t v : y) ASSERT_EQ(v, 0x5A5A5A5Au) << needle;
  };
  std::vector<float> w(8, 0.5f);
  expect_fail(
      [&] {
        op.run_routed(dx, DType::kBF16, dy, DType::kBF16, 4, {0, 1, 2, 8, 0, 1, 2, 3}, w, 2);
      },
      "topk_ids[1][1] = 8 is outside [0, E = 8)");
  expect_fail(
      [&] {
        op.run_routed(dx, DType::kBF16, dy, DType::kBF16, 4, {0, 1, 2, -1, 0, 1, 2, 3}, w, 2);
      },
      "= -1 is outside");
  MoeRouting r;
  r.top_k = 9;
  expect_fail([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, 4, r); }, "top_k = 9");
  r.top_k = 2;
  r.kind = MoeRouting::Kind::kGrouped;
  r.n_group = 3;
  expect_fail([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, 4, r); }, "n_group = 3 must divide E = 8");
  r.kind = MoeRouting::Kind::kSoftmax;
  MoeRunOptions o;
  o.expert_map = {0, 1, 2};
  expect_fail([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, 4, r, o); }, "expert_map has 3 entries");
  MoeRunOptions neg;
  neg.splits = -1;  // refused on either path, before any row is chosen
  expect_fail([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, 4, r, neg); }, "splits = -1 must be 0 (auto) or positive");
  neg.decode = 1;
  expect_fail([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, 4, r, neg); }, "splits = -1 must be 0 (auto) or positive");
  expect_fail([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, 5, r); }, "input buffer holds");
  // A NaN router weight (and a non-finite expert weight) is refused at load (issue 16).
  {
    MoeSynth nanr(s);
    MoeCheckpoint m = nanr.checkpoint();
    ASSERT_NE(m.router, nullptr);
    StTensor router = *m.router;
    std::vector<uint8_t> rd(router.data, router.data + router.nbytes);
    const uint16_t nan16 = router.dtype == StDType::kF32 ? 0 : (router.dtype == StDType::kF16 ? 0x7E00 : 0x7FC0);
    if (router.dtype == StDType::kF32) {
      const float q = NAN;
      std::memcpy(rd.data() + 4 * 300, &q, 4);
    } else {
      std::memcpy(rd.data() + 2 * 300, &nan16, 2);
    }
    router.data = rd.data();
    m.router = &router;
    try {
      FusedMoe broken(c, m);
      ADD_FAILURE() << "NaN router weight accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find("[1][44] = nan is not finite"), std::string::npos) << e.what();
    }
  }
  // Mismatched expert shapes are refused at load.
  MoeSynth bad(s);
  MoeCheckpoint m = bad.checkpoint();
  StTensor shrunk = *m.up_d[3];
  shrunk.shape = {64, 256};
  m.up_d[3] = &shrunk;
  try {
    FusedMoe broken(c, m);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expert 3 up_proj"), std::string::npos) << e.what();
  }
}

// The decode path (moe/decode.cl: routing stage, top-k + alignment, gate_up, down + combine),
// forced on whatever device runs the tests: split-K hand-over through the last work-group of a
// tile, the combine through the last slot of a token, counters reused across calls.
TEST(MoeDecode, DenseAndFp8AgainstFp64) {
  auto& c = test::ctx();
  for (DType dt : {DType::kBF16, DType::kF16}) {
    MoeSynthSpec s = spec(MoeWeightKind::kDense, 8, test::seed() + 11);
    s.dense_dtype = dt;
    s.H = 272;  // not a multiple of 128 or 256: partial column tiles, a ragged K
    s.I = 208;
    MoeSynth syn(s);
    FusedMoe op(c, syn.checkpoint());
    MoeRouting r;
    r.top_k = 2;
    r.renormalize = true;
    for (int splits : {0, 1, 3})
      for (int64_t T : {1, 5, 64}) {  // blocks of 1, 2 and 16 rows
        MoeRunOptions o;
        o.decode = 1;
        o.splits = splits;
        check_layer(op, syn.checkpoint(), T, r, dt, test::seed() + uint64_t(T * 7 + splits), o);
      }
  }
}

// More experts than the top-k + alignment work-group has work-items (E = 600 > 256, so each
// work-item lays out several experts after the group scan) and grouped routing with 12 groups
// picked by the team arg-max, on the decode path.
TEST(MoeDecode, ManyExpertsAlignedByTheGroupScan) {
  auto& c = test::ctx();
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 600, test::seed() + 51);
  s.H = 64;
  s.I = 32;
  s.bias = true;
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  for (int grouped = 0; grouped < 2; ++grouped) {
    MoeRouting r;
    r.top_k = 6;
    r.renormalize = true;
    if (grouped) {
      r.kind = MoeRouting::Kind::kGrouped;
      r.n_group = 12;
      r.topk_group = 5;
    }
    for (int64_t T : {1, 7, 40}) {
      MoeRunOptions o;
      o.decode = 1;
      check_layer(op, syn.checkpoint(), T, r, DType::kBF16, test::seed() + uint64_t(T * 3 + grouped), o);
    }
  }
}

// FP8 experts on the decode path, grouped routing with the bias, k = 6. Besides this run's seed,
// 12509541205026901782: the path once staged activations as code * scale, so every product in
// the block sums was rounded and `a` came out several ulp less accurate; on that seed one value
// of `a` crossed an e4m3 rounding midpoint in the down GEMM's quantization (rel mean error
// 8.6e-3 at T=1). It now scales each block's sum of code products once, as SPEC section 4 and
// the general path do.
TEST(MoeDecode, Fp8AgainstFp64) {
  auto& c = test::ctx();
  const uint64_t seeds[] = {test::seed(), test::seed() * 0x9E3779B97F4A7C15ull + 1, 12509541205026901782ull};
  for (uint64_t seed : seeds) {
    MoeSynthSpec s = spec(MoeWeightKind::kFp8, 16, seed + 12);
    s.bias = true;
    MoeSynth syn(s);
    FusedMoe op(c, syn.checkpoint());
    const MoeRouting r = deepseek_like_routing();
    for (int splits : {0, 2})
      for (int64_t T : {1, 5, 40}) {
        MoeRunOptions o;
        o.decode = 1;
        o.splits = splits;
        check_layer(op, syn.checkpoint(), T, r, DType::kBF16, seed + uint64_t(T * 5 + splits), o);
      }
  }
}

// Inf/NaN policy of the FP8 staging (docs/numerics.md) on the decode path: a token holding NaN or
// Inf gets NaN in every output, the other tokens are bit-identical to a clean run.
TEST(MoeDecode, Fp8NonFiniteTokensStayTheirOwn) {
  auto& c = test::ctx();
  MoeSynth syn(spec(MoeWeightKind::kFp8, 8, test::seed() + 16));
  FusedMoe op(c, syn.checkpoint());
  const int64_t T = 4, H = 256;
  const std::vector<int> ids = {6, 1, 6, 3, 1, 6, 6, 3};
  const std::vector<float> w = {0.7f, 0.3f, 0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f};
  auto x = random_activations(T, H, DType::kBF16, test::seed() + 4);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(T * H) * 2);
  MoeRunOptions o;
  o.decode = 1;
  auto run = [&](const std::vector<uint8_t>& xin) {
    c.write(dx, xin.data(), xin.size());
    c.fill_u32(dy, 0x5A5A5A5Au, size_t(T * H) * 2);
    op.run_routed(dx, DType::kBF16, dy, DType::kBF16, T, ids, w, 2, o);
    std::vector<uint16_t> y(size_t(T * H));
    c.read(dy, y.data(), y.size() * 2);
    return y;
  };
  const std::vector<uint16_t> clean = run(x);
  std::vector<uint8_t> bad = x;
  const uint16_t nan16 = f32_to_bf16(NAN), inf16 = f32_to_bf16(-INFINITY);
  std::memcpy(bad.data() + size_t(1 * H + 200) * 2, &nan16, 2);
  std::memcpy(bad.data() + size_t(2 * H + 7) * 2, &inf16, 2);
  const std::vector<uint16_t> y = run(bad);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < H; ++n) {
      const size_t i = size_t(t * H + n);
      if (t == 1 || t == 2)
        ASSERT_TRUE(std::isnan(bf16_to_f32(y[i]))) << "token " << t << " column " << n;
      else
        ASSERT_EQ(y[i], clean[i]) << "token " << t << " column " << n;
    }
}

TEST(MoeDecode, RouterWeightAndIdenticalTokens) {
  auto& c = test::ctx();
  for (MoeWeightKind kind : {MoeWeightKind::kDense, MoeWeightKind::kFp8}) {
    MoeSynthSpec s = spec(kind, 8, test::seed() + 13);
    MoeSynth syn(s);
    FusedMoe op(c, syn.checkpoint());
    const int64_t T = 12;
    auto row = random_activations(1, 256, DType::kBF16, test::seed());
    std::vector<uint8_t> x;
    for (int64_t t = 0; t < T; ++t) x.insert(x.end(), row.begin(), row.end());
    cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(T * 256) * 2), dz = c.alloc(size_t(T * 256) * 2);
    c.write(dx, x.data(), x.size());
    MoeRouting r;
    r.top_k = 2;
    MoeRunOptions dec, gen;
    dec.decode = 1;
    gen.decode = -1;
    op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, dec);  // router weight from the layer
    std::vector<uint16_t> y(size_t(T * 256)), z(y.size());
    c.read(dy, y.data(), y.size() * 2);
    for (int64_t t = 1; t < T; ++t)
      for (int n = 0; n < 256; ++n) ASSERT_EQ(y[size_t(t * 256 + n)], y[size_t(n)]) << "token " << t;
    // Same routing as the general path (the logits kernels differ only in summation order, and
    // these logits are far from ties), outputs within the tolerance of each other.
    std::vector<int> ids_dec, ids_gen;
    std::vector<float> w_dec, w_gen;
    op.read_routing(&ids_dec, &w_dec);
    op.run(dx, DType::kBF16, dz, DType::kBF16, T, r, gen);
    op.read_routing(&ids_gen, &w_gen);
    EXPECT_EQ(ids_dec, ids_gen);
    c.read(dz, z.data(), z.size() * 2);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(bf16_to_f32(y[i]), bf16_to_f32(z[i]), 2e-2) << "element " << i;
  }
}

TEST(MoeDecode, HostRoutedAgainstFp64) {
  auto& c = test::ctx();
  for (MoeWeightKind kind : {MoeWeightKind::kDense, MoeWeightKind::kFp8}) {
    MoeSynth syn(spec(kind, 8, test::seed() + 15));
    FusedMoe op(c, syn.checkpoint());
    const int64_t T = 5;
    const std::vector<int> ids = {6, 1, 6, 3, 1, 6, 6, 3, 6, 1};  // experts 1, 3, 6 only
    const std::vector<float> w = {0.7f, 0.3f, 0.6f, 0.4f, 0.5f, 0.5f, 0.9f, 0.1f, 0.2f, 0.8f};
    auto x = random_activations(T, 256, DType::kBF16, test::seed() + 3);
    cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(T * 256) * 2);
    c.write(dx, x.data(), x.size());
    for (int splits : {1, 2}) {
      c.fill_u32(dy, 0xFFFFFFFFu, size_t(T * 256) * 2);
      MoeRunOptions o;
      o.decode = 1;
      o.splits = splits;
      op.run_routed(dx, DType::kBF16, dy, DType::kBF16, T, ids, w, 2, o);  // the alignment alone routes
      std::vector<uint8_t> y(size_t(T * 256) * 2);
      c.read(dy, y.data(), y.size());
      ErrorStats e = compare_moe(y, DType::kBF16,
                                 moe_reference_alternatives(syn.checkpoint(), x.data(), DType::kBF16, T, ids, w, 2));
      EXPECT_TRUE(MoeProblem::within_tolerance(e))
          << moe_kind_name(kind) << " splits " << splits << ": max abs " << e.max_abs_err << ", NaN " << e.nan_count;
    }
  }
}

TEST(MoeDecode, RefusedWhereItDoesNotApply) {
  auto& c = test::ctx();
  MoeSynth syn(spec(MoeWeightKind::kInt4, 8, test::seed() + 14));
  FusedMoe op(c, syn.checkpoint());
  auto x = random_activations(1, 256, DType::kF16, 1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  MoeRouting r;
  MoeRunOptions o;
  o.decode = 1;
  try {
    op.run(dx, DType::kF16, dy, DType::kF16, 1, r, o);
    FAIL() << "int4 experts took the decode path";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("int4"), std::string::npos) << e.what();
  }
}


// FusedMoe is a dispatcher over the fused_moe rows: the decode row for few slots on a device that
// is not a CPU, the general row otherwise; a forced row answers for itself, the table's choice
// gives way when its launcher cannot take the call; the events name the row that ran.
TEST(MoeLayer, DispatchesOverTheFusedMoeRows) {
  DeviceFeatures gpu, cpu;
  gpu.is_gpu = true;
  cpu.is_cpu = true;
  EXPECT_STREQ(select_variant("fused_moe", gpu, 8).variant, "decode");
  EXPECT_STREQ(select_variant("fused_moe", gpu, 512).variant, "decode");
  EXPECT_STREQ(select_variant("fused_moe", gpu, 513).variant, "general");
  EXPECT_STREQ(select_variant("fused_moe", cpu, 8).variant, "general");

  auto& c = test::ctx();
  MoeSynth dense(spec(MoeWeightKind::kDense, 8, test::seed() + 17)), int4(spec(MoeWeightKind::kInt4, 8, 18));
  FusedMoe op(c, dense.checkpoint()), op4(c, int4.checkpoint());
  auto x = random_activations(2, 256, DType::kBF16, test::seed());
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  MoeRouting r;
  auto ran = [&](FusedMoe& o, const MoeRunOptions& opt) {
    OpEvents ev = o.run(dx, DType::kBF16, dy, DType::kBF16, 2, r, opt);
    EXPECT_NE(ev.row, nullptr);
    EXPECT_STREQ(ev.row->op, "fused_moe");
    EXPECT_STREQ(o.choose(2, r.top_k, opt).variant, ev.row->variant);
    return std::string(ev.row->variant);
  };
  auto refused = [&](FusedMoe& m, const MoeRunOptions& opt, const std::string& needle) {
    try {
      m.run(dx, DType::kBF16, dy, DType::kBF16, 2, r, opt);
      ADD_FAILURE() << "accepted; wanted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string table_choice = c.features().is_cpu ? "general" : "decode";
  EXPECT_EQ(ran(op, {}), table_choice);
  MoeRunOptions o;
  o.variant = "decode";
  EXPECT_EQ(ran(op, o), "decode");
  EXPECT_TRUE(op.decode_applies(2, r.top_k, o));
  o.variant = "general";
  EXPECT_EQ(ran(op, o), "general");
  EXPECT_FALSE(op.decode_applies(2, r.top_k, o));
  o.variant.clear();
  o.decode = 1;
  EXPECT_EQ(ran(op, o), "decode");
  o.decode = -1;
  EXPECT_EQ(ran(op, o), "general");
  EXPECT_EQ(ran(op4, {}), "general");  // int4 experts: the decode row gives way, whatever the device
  {
    test::ScopedEnv env("CLQ_VARIANT", "fused_moe=decode");
    EXPECT_EQ(ran(op, {}), "decode");
    refused(op4, {}, "decode path does not apply: int4 experts");
  }
  o.decode = 1;
  o.variant = "general";
  refused(op, o, "decode = 1 and variant = 'general' disagree");
  o.decode = 0;
  o.variant = "fast";
  refused(op, o, "unknown variant 'fast' for fused_moe");
}

// cl_khr_command_buffer (PoCL has it; NVIDIA's 580 driver does not): one MoE decode call
// recorded, then replayed over new activations in the same buffer, must give the bits a direct
// call gives; and a recording refuses what it cannot hold, leaving the context usable.
TEST(MoeDecode, RecordedCallReplaysTheDirectCallsBits) {
  auto& c = test::ctx();
  if (!c.command_buffers()) GTEST_SKIP() << c.features().device_name << " offers no cl_khr_command_buffer";
  MoeSynthSpec s = spec(MoeWeightKind::kDense, 8, test::seed() + 41);
  MoeSynth syn(s);
  FusedMoe op(c, syn.checkpoint());
  MoeRouting r;
  r.top_k = 2;
  r.renormalize = true;
  MoeRunOptions o;
  o.decode = 1;
  const int64_t T = 3;
  const size_t bytes = size_t(T * s.H) * 2;
  cl::Buffer dx = c.alloc(bytes), dy = c.alloc(bytes), dz = c.alloc(bytes);
  auto x0 = random_activations(T, s.H, DType::kBF16, test::seed() + 42);
  c.write(dx, x0.data(), bytes);
  op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, o);  // scratch allocated before recording
  auto rec = c.record([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, o); });
  ASSERT_GE(rec->launches().size(), 2u);
  for (uint64_t round = 0; round < 3; ++round) {
    auto x = random_activations(T, s.H, DType::kBF16, test::seed() + 43 + round);
    c.write(dx, x.data(), bytes);
    c.fill_u32(dy, 0xFFFFFFFFu, bytes);
    rec->replay();
    std::vector<uint8_t> replayed(bytes), direct(bytes);
    c.read(dy, replayed.data(), bytes);
    op.run(dx, DType::kBF16, dz, DType::kBF16, T, r, o);
    c.read(dz, direct.data(), bytes);
    ASSERT_EQ(replayed, direct) << "round " << round;
  }
  try {
    c.record([&] { c.fill_u32(dy, 0u, bytes); });
    FAIL() << "a fill was recorded";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("only kernel launches"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(c.recording());
  c.fill_u32(dy, 0u, bytes);  // the queue works again
  c.finish();
}
