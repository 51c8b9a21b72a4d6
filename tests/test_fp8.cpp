// FP8 (SPEC sections 1, 4, 6): the activation quantizer against its host twin, the GEMM against
// an fp64 reference on the same quantized inputs for block, per-tensor and weight-only modes on
// every supported variant and both device layouts, zero rows, Inf/NaN, and each bad-input rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "host/caps/caps.h"
#include "host/formats/fp8.h"
#include "host/numeric.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/wgmma_patch.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

// SPEC section 4: codes equal except at most 1 e4m3 ulp on at most 0.1% of elements.
void expect_codes_match(const std::vector<uint8_t>& dev, const std::vector<uint8_t>& host, const char* what) {
  ASSERT_EQ(dev.size(), host.size());
  size_t off_by_one = 0;
  for (size_t i = 0; i < dev.size(); ++i) {
    if (dev[i] == host[i]) continue;
    bool nan_both = (dev[i] & 0x7F) == 0x7F && (host[i] & 0x7F) == 0x7F;
    if (nan_both) continue;
    int d = int(dev[i] & 0x7F) - int(host[i] & 0x7F);
    ASSERT_TRUE((dev[i] & 0x80) == (host[i] & 0x80) && std::abs(d) == 1)
        << what << " element " << i << ": device 0x" << std::hex << int(dev[i]) << " host 0x" << int(host[i]);
    ++off_by_one;
  }
  EXPECT_LE(double(off_by_one), 0.001 * double(dev.size())) << what;
}

std::vector<uint8_t> run_quant(Fp8Quantizer& q, const std::vector<uint8_t>& x, DType xt, int64_t M, int64_t K,
                               Fp8Act mode, std::optional<float> st, std::vector<float>* scales) {
  auto& c = test::ctx();
  cl::Buffer dx = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  q.run(dx, xt, M, K, mode, st);
  std::vector<uint8_t> codes;
  q.read(&codes, scales);
  return codes;
}

struct GemmCase {
  int64_t M, N, K;
  bool block;
  Fp8Act act;
  DType xt, yt;
  bool e8m0 = false;  // block scales stored as F8_E8M0
  bool channel = false;  // per-channel weight scales [N, 1]; `block` then says per-token-group activations
};

// `splits`: split-K counts every variant runs with (0 = its heuristic); gemv also runs with 2.
void run_gemm_case(const GemmCase& g, uint64_t seed, const std::vector<int>& splits = {0}) {
  SCOPED_TRACE("M" + std::to_string(g.M) + " N" + std::to_string(g.N) + " K" + std::to_string(g.K) + " " +
               fp8_act_name(g.act) + " x " + dtype_name(g.xt) + " y " + dtype_name(g.yt) + " seed " +
               std::to_string(seed));
  auto& c = test::ctx();
  Fp8SynthSpec spec;
  spec.N = g.N;
  spec.K = g.K;
  spec.block = g.block && !g.channel;
  spec.channel = g.channel;
  spec.with_input_scale = g.act == Fp8Act::kTensorStatic;
  spec.e8m0_scales = g.e8m0;
  spec.seed = seed;
  Fp8Synth synth(spec);
  Fp8Checkpoint ck = synth.checkpoint();
  if (g.e8m0) {
    ASSERT_EQ(ck.weight_scale_inv->dtype, StDType::kF8E8M0);
  }
  Fp8Packed packed = repack_fp8(ck);
  auto x = random_activations(g.M, g.K, g.xt, seed ^ 0x77);
  auto ref = fp8_gemm_reference(ck, x.data(), g.xt, g.M, g.act);
  const size_t yb = size_t(g.M * g.N) * dtype_size(g.yt);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(yb);
  c.write(dx, x.data(), x.size());
  std::vector<std::pair<std::string, int>> runs;
  for (auto* v : supported_variants(Fp8Gemm::op_name(g.block, g.act), c.features()))
    for (int sp : splits) runs.push_back({v->variant, sp});
  runs.push_back({"gemv", 2});
  ASSERT_GE(runs.size(), 3u);
  for (const char* tuning : {"cpu", "gpu"}) {
    test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
    Fp8Gemm op(c, packed);
    for (auto& [variant, splits] : runs) {
      SCOPED_TRACE(std::string("tuning ") + tuning + ", variant " + variant + ", splits " + std::to_string(splits));
      c.fill_u32(dy, 0xFFFFFFFFu, yb);
      Fp8RunOptions opt;
      opt.act = g.act;
      opt.variant = variant;
      opt.splits = splits;
      op.run(dx, g.xt, dy, g.yt, g.M, opt);
      std::vector<uint8_t> y(yb);
      c.read(dy, y.data(), yb);
      ErrorStats e = compare_output(y.data(), g.yt, ref);
      EXPECT_EQ(e.nan_count, 0u);
      EXPECT_LT(e.rel_mean(), Fp8Problem::kTolerance) << "max abs err " << e.max_abs_err;
      EXPECT_GT(e.mean_abs_ref, 0.0);
    }
  }
}

}  // namespace

TEST(Fp8Quant, MatchesHostTwinOnRaggedShapes) {
  auto& c = test::ctx();
  Fp8Quantizer q(c);
  int i = 0;
  for (int64_t M : {1, 7, 83})
    for (int64_t K : {128, 3884, 7168})
      for (DType dt : {DType::kF16, DType::kBF16, DType::kF32}) {
        if ((i++ % 2) && M == 83) continue;  // keep PoCL time small; every M, K, dtype still appears
        SCOPED_TRACE("M" + std::to_string(M) + " K" + std::to_string(K) + " " + dtype_name(dt));
        auto x = random_activations(M, K, dt, test::seed() + uint64_t(i));
        // Spread magnitudes so groups get very different scales.
        for (int64_t r = 0; r < M; ++r) {
          float f = std::ldexp(1.0f, int(r % 9) - 4);
          for (int64_t k = 0; k < K; ++k)
            store_from_f32(x.data(), size_t(r * K + k), dt, load_as_f32(x.data(), size_t(r * K + k), dt) * f);
        }
        for (Fp8Act mode :
             {Fp8Act::kBlockDynamic, Fp8Act::kTensorDynamic, Fp8Act::kTensorStatic, Fp8Act::kTokenDynamic})
          for (auto shape : {Fp8Quantizer::Shape::kItem, Fp8Quantizer::Shape::kWg, Fp8Quantizer::Shape::kRows}) {
            // every kernel shape must give the host twin's bits
            q.set_shape(shape);
            const std::string what = std::string(fp8_act_name(mode)) + " shape " + std::to_string(int(shape));
            std::vector<float> scales;
            auto codes = run_quant(q, x, dt, M, K, mode, 0.01f, &scales);
            Fp8ActHost h = quantize_fp8_host(x.data(), dt, M, K, mode, 0.01f);
            expect_codes_match(codes, h.codes, what.c_str());
            for (size_t s = 0; s < scales.size(); ++s) ASSERT_EQ(scales[s], h.scales[s]) << what << " scale " << s;
          }
      }
}

// Padded-codes runs (the tensor-core GEMMs' A operand): every row is the unpadded run's codes
// followed by +0 up to Kp, for every kernel shape, with K a multiple of 8 (the rows shape's
// vector loads and 8-byte stores, a ragged last group at 1000) and not (3884: the scalar path).
TEST(Fp8Quant, PaddedCodesAreTheCodesThenZeros) {
  auto& c = test::ctx();
  Fp8Quantizer q(c);
  int i = 0;
  for (auto [K, dt] : {std::pair<int64_t, DType>{1000, DType::kF16}, {3884, DType::kBF16}, {1024, DType::kF32}}) {
      const int64_t M = 5, Kp = (K + 127) / 128 * 128;
      SCOPED_TRACE("K" + std::to_string(K) + " " + dtype_name(dt));
      auto x = random_activations(M, K, dt, test::seed() + 40 + uint64_t(i++));
      const Fp8ActHost h = quantize_fp8_host(x.data(), dt, M, K, Fp8Act::kBlockDynamic, 0.01f);
      for (auto shape : {Fp8Quantizer::Shape::kItem, Fp8Quantizer::Shape::kWg, Fp8Quantizer::Shape::kRows}) {
        q.set_shape(shape);
        cl::Buffer dx = c.alloc(x.size());
        c.write(dx, x.data(), x.size());
        q.run(dx, dt, M, K, Fp8Act::kBlockDynamic, std::nullopt, /*padded_codes=*/true);
        std::vector<uint8_t> codes;
        std::vector<float> scales;
        q.read_padded(&codes, &scales);
        ASSERT_EQ(codes.size(), size_t(M * Kp));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t k = 0; k < Kp; ++k)
            ASSERT_EQ(codes[size_t(m * Kp + k)], k < K ? h.codes[size_t(m * K + k)] : 0)
                << "shape " << int(shape) << " row " << m << " column " << k;
        for (size_t s = 0; s < scales.size(); ++s) ASSERT_EQ(scales[s], h.scales[s]) << "scale " << s;
      }
    }
}

// scale_fmt ue8m0 (DeepSeek-V3.1): every dynamic scale is the next power of two at or above the
// plain one, device and host twin agree, and the GEMM holds to its reference with them.
TEST(Fp8Quant, Ue8m0ScalesArePowersOfTwoAndMatchTheHost) {
  auto& c = test::ctx();
  Fp8Quantizer q(c);
  q.set_ue8m0_scales(true);
  const int64_t M = 7, K = 3884;
  auto x = random_activations(M, K, DType::kBF16, test::seed() + 7);
  for (Fp8Act mode : {Fp8Act::kBlockDynamic, Fp8Act::kTensorDynamic}) {
    std::vector<float> scales;
    auto codes = run_quant(q, x, DType::kBF16, M, K, mode, std::nullopt, &scales);
    Fp8ActHost h = quantize_fp8_host(x.data(), DType::kBF16, M, K, mode, 0, /*ue8m0=*/true);
    Fp8ActHost plain = quantize_fp8_host(x.data(), DType::kBF16, M, K, mode);
    expect_codes_match(codes, h.codes, fp8_act_name(mode));
    for (size_t i = 0; i < scales.size(); ++i) {
      ASSERT_EQ(scales[i], h.scales[i]) << i;
      int e = 0;
      EXPECT_EQ(std::frexp(scales[i], &e), 0.5f) << "not a power of two: " << scales[i];
      EXPECT_GE(scales[i], plain.scales[i]);
      EXPECT_LT(scales[i], 2 * plain.scales[i]);
    }
  }
  Fp8SynthSpec spec;
  spec.N = 200;
  spec.K = 300;
  Fp8Synth synth(spec);
  Fp8Checkpoint ck = synth.checkpoint();
  ck.ue8m0_act_scales = true;
  const Fp8Packed p = repack_fp8(ck);
  ASSERT_TRUE(p.ue8m0_act_scales);
  Fp8Gemm op(c, p);
  auto xa = random_activations(5, 300, DType::kBF16, test::seed() + 8);
  auto ref = fp8_gemm_reference(ck, xa.data(), DType::kBF16, 5, Fp8Act::kBlockDynamic);
  cl::Buffer dx = c.alloc(xa.size()), dy = c.alloc(5 * 200 * 2);
  c.write(dx, xa.data(), xa.size());
  for (auto* v : supported_variants("fp8_block_gemm", c.features())) {
    c.fill_u32(dy, 0xFFFFFFFFu, 5 * 200 * 2);
    Fp8RunOptions o;
    o.variant = v->variant;
    op.run(dx, DType::kBF16, dy, DType::kBF16, 5, o);
    std::vector<uint8_t> y(5 * 200 * 2);
    c.read(dy, y.data(), y.size());
    ErrorStats e = compare_output(y.data(), DType::kBF16, ref);
    EXPECT_EQ(e.nan_count, 0u) << v->variant;
    EXPECT_LT(e.rel_mean(), Fp8Problem::kTolerance) << v->variant;
  }
}

TEST(Fp8Quant, ZeroRowGivesZeroCodesAndAClampedScale) {
  auto& c = test::ctx();
  Fp8Quantizer q(c);
  const int64_t M = 3, K = 300;
  auto x = random_activations(M, K, DType::kBF16, test::seed());
  std::memset(x.data() + K * 2, 0, K * 2);  // row 1 all zeros
  std::vector<float> scales;
  auto codes = run_quant(q, x, DType::kBF16, M, K, Fp8Act::kBlockDynamic, std::nullopt, &scales);
  for (int64_t k = 0; k < K; ++k) ASSERT_EQ(codes[size_t(K + k)], 0);
  EXPECT_EQ(scales[3], 1e-10f / 448.0f);
}

// Inf/NaN policy (fp8/quant.cl): a group with NaN gets a NaN scale and NaN codes; a group with
// Inf gets an Inf scale, finite values 0 and the infinities NaN. The token's outputs are NaN;
// other tokens are untouched.
TEST(Fp8Quant, InfAndNanPolicy) {
  auto& c = test::ctx();
  Fp8Quantizer q(c);
  const int64_t M = 3, K = 256;
  auto x = random_activations(M, K, DType::kF32, test::seed());
  float* xf = reinterpret_cast<float*>(x.data());
  xf[0 * K + 5] = NAN;
  xf[1 * K + 200] = INFINITY;
  for (auto shape : {Fp8Quantizer::Shape::kItem, Fp8Quantizer::Shape::kWg, Fp8Quantizer::Shape::kRows}) {
    SCOPED_TRACE("shape " + std::to_string(int(shape)));
    q.set_shape(shape);
    std::vector<float> scales;
    auto codes = run_quant(q, x, DType::kF32, M, K, Fp8Act::kBlockDynamic, std::nullopt, &scales);
    EXPECT_TRUE(std::isnan(scales[0]));
    for (int k = 0; k < 128; ++k) EXPECT_EQ(codes[size_t(k)] & 0x7F, 0x7F);
    EXPECT_FALSE(std::isnan(scales[1]));  // the other group of row 0 is normal
    EXPECT_TRUE(std::isinf(scales[3]));
    EXPECT_EQ(codes[size_t(K + 200)] & 0x7F, 0x7F);
    EXPECT_EQ(codes[size_t(K + 130)] & 0x7F, 0);  // finite / Inf = +-0
    auto h = quantize_fp8_host(x.data(), DType::kF32, M, K, Fp8Act::kBlockDynamic);
    expect_codes_match(codes, h.codes, "inf/nan");
  }

  // Through the GEMM: rows 0 and 1 become NaN, row 2 stays finite.
  Fp8SynthSpec spec;
  spec.N = 64;
  spec.K = K;
  Fp8Synth synth(spec);
  Fp8Gemm op(c, repack_fp8(synth.checkpoint()));
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * 64) * 2);
  c.write(dx, x.data(), x.size());
  for (auto* v : supported_variants("fp8_block_gemm", c.features())) {
    Fp8RunOptions opt;
    opt.variant = v->variant;
    op.run(dx, DType::kF32, dy, DType::kBF16, M, opt);
    std::vector<uint16_t> y(static_cast<size_t>(M * 64));
    c.read(dy, y.data(), y.size() * 2);
    for (int n = 0; n < 64; ++n) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(y[size_t(n)]))) << v->variant;
      EXPECT_TRUE(std::isnan(bf16_to_f32(y[size_t(64 + n)]))) << v->variant;
      EXPECT_TRUE(std::isfinite(bf16_to_f32(y[size_t(128 + n)]))) << v->variant;
    }
  }
}

TEST(Fp8Gemm, BlockScaledRaggedShapes) {
  const uint64_t s = test::seed() + 10;
  // M in {1, 7, 8, 83, 256}, N in {128, 512, 576, 7168}, K in {256, 3884, 4096, 7168}: every
  // value appears, trimmed from the full product for a 2-core CPU; the ragged cases all stay.
  run_gemm_case({1, 7168, 7168, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kBF16}, s);
  run_gemm_case({7, 576, 3884, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kBF16}, s + 1);
  run_gemm_case({8, 512, 4096, true, Fp8Act::kBlockDynamic, DType::kF16, DType::kF16}, s + 2);
  run_gemm_case({83, 128, 3884, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kF16}, s + 3);
  run_gemm_case({256, 576, 256, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kBF16}, s + 4);
  run_gemm_case({3, 200, 136, true, Fp8Act::kBlockDynamic, DType::kF32, DType::kF32},
                s + 5);  // N, K not multiples of 8
}

// The block counts a K range can give a pipelined kernel (one block, two, an odd and an even
// number above its depth), each through every variant, over row and column tiles that are partly
// outside the problem (M and N past a multiple of 128).
TEST(Fp8Gemm, EveryPipelineDepthOfK) {
  const uint64_t s = test::seed() + 30;
  run_gemm_case({130, 300, 128, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kBF16}, s, {1});
  run_gemm_case({300, 136, 1280, true, Fp8Act::kBlockDynamic, DType::kF16, DType::kBF16}, s + 1, {1, 2, 3, 10});
  run_gemm_case({129, 257, 1024, false, Fp8Act::kTensorDynamic, DType::kBF16, DType::kF32}, s + 2, {1, 8});
}

// ue8m0 block scales (newer DeepSeek-V3 checkpoints): F8_E8M0 bytes decoded exactly to 2^(e-127),
// the reference reading the same bytes; the decoded values must equal the powers of two written.
TEST(Fp8Gemm, E8m0BlockScales) {
  Fp8SynthSpec spec;
  spec.N = 200;
  spec.K = 300;
  spec.e8m0_scales = true;
  Fp8Synth synth(spec);
  const Fp8Checkpoint ck = synth.checkpoint();
  const Fp8Packed p = repack_fp8(ck);
  for (size_t i = 0; i < p.sw.size(); ++i) {
    EXPECT_EQ(p.sw[i], std::ldexp(1.0f, int(ck.weight_scale_inv->data[i]) - 127)) << i;
    int e = 0;
    EXPECT_EQ(std::frexp(p.sw[i], &e), 0.5f) << "not a power of two: " << p.sw[i];
  }
  run_gemm_case({5, 200, 300, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kBF16, true}, test::seed() + 91);
  run_gemm_case({33, 136, 256, true, Fp8Act::kBlockDynamic, DType::kF16, DType::kF16, true}, test::seed() + 92);
}

// compressed-tensors FP8 channel strategy: one scale per output row, applied after the sum
// (fp8_channel_scale), with dynamic per-token-group or static per-tensor activations.
TEST(Fp8Gemm, PerChannelScales) {
  const uint64_t s = test::seed() + 30;
  GemmCase dyn{1, 576, 3884, true, Fp8Act::kBlockDynamic, DType::kBF16, DType::kBF16};
  dyn.channel = true;
  run_gemm_case(dyn, s);
  GemmCase dyn2{17, 136, 300, true, Fp8Act::kBlockDynamic, DType::kF16, DType::kF32};
  dyn2.channel = true;
  run_gemm_case(dyn2, s + 1);
  // Per token over all K: what compressed-tensors FP8_DYNAMIC checkpoints are calibrated for,
  // and what a channel layer without input_scale takes by default.
  GemmCase tok{5, 264, 1000, true, Fp8Act::kTokenDynamic, DType::kBF16, DType::kBF16};
  tok.channel = true;
  run_gemm_case(tok, s + 4);
  GemmCase st{9, 200, 256, false, Fp8Act::kTensorStatic, DType::kBF16, DType::kBF16};
  st.channel = true;
  run_gemm_case(st, s + 2);
  GemmCase wo{3, 128, 512, true, Fp8Act::kNone, DType::kF16, DType::kF16};
  wo.channel = true;
  run_gemm_case(wo, s + 3);
  // A channel scale count that is not N, and a non-positive scale, are refused naming the rule.
  Fp8SynthSpec spec;
  spec.N = 64;
  spec.K = 128;
  spec.block = false;
  spec.channel = true;
  Fp8Synth synth(spec);
  Fp8Checkpoint ck = synth.checkpoint();
  StTensor wrong = *ck.weight_scale;
  wrong.shape = {32, 1};
  wrong.nbytes = 32 * 4;
  ck.weight_scale = &wrong;
  try {
    validate_fp8(ck);
    ADD_FAILURE() << "a [32, 1] scale for N = 64 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidShape);
    EXPECT_NE(std::string(e.what()).find("[N, 1] = [64, 1]"), std::string::npos) << e.what();
  }
  std::vector<float> neg(64, 0.01f);
  neg[7] = -1.0f;
  StTensor bad = *synth.checkpoint().weight_scale;
  bad.data = reinterpret_cast<const uint8_t*>(neg.data());
  ck.weight_scale = &bad;
  try {
    validate_fp8(ck);
    ADD_FAILURE() << "a negative channel scale was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[7] = -1"), std::string::npos) << e.what();
  }
}

TEST(Fp8Gemm, PerTensorAndWeightOnly) {
  const uint64_t s = test::seed() + 20;
  run_gemm_case({5, 576, 3884, false, Fp8Act::kTensorDynamic, DType::kBF16, DType::kBF16}, s);
  run_gemm_case({9, 512, 256, false, Fp8Act::kTensorStatic, DType::kF16, DType::kF16}, s + 1);
  run_gemm_case({1, 576, 3884, true, Fp8Act::kNone, DType::kBF16, DType::kBF16}, s + 2);
  run_gemm_case({33, 128, 4096, false, Fp8Act::kNone, DType::kF16, DType::kF16}, s + 3);
}

TEST(Fp8Gemm, ZeroActivationRowGivesZeros) {
  auto& c = test::ctx();
  Fp8SynthSpec spec;
  spec.N = 128;
  spec.K = 384;
  spec.seed = test::seed();
  Fp8Synth synth(spec);
  Fp8Gemm op(c, repack_fp8(synth.checkpoint()));
  const int64_t M = 2;
  auto x = random_activations(M, 384, DType::kBF16, test::seed());
  std::memset(x.data(), 0, 384 * 2);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(M * 128 * 2);
  c.write(dx, x.data(), x.size());
  for (auto* v : supported_variants("fp8_block_gemm", c.features())) {
    Fp8RunOptions opt;
    opt.variant = v->variant;
    c.fill_u32(dy, 0xFFFFFFFFu, M * 128 * 2);
    op.run(dx, DType::kBF16, dy, DType::kBF16, M, opt);
    std::vector<uint16_t> y(M * 128);
    c.read(dy, y.data(), y.size() * 2);
    for (int n = 0; n < 128; ++n) ASSERT_EQ(bf16_to_f32(y[size_t(n)]), 0.0f) << v->variant << " n=" << n;
    for (int n = 0; n < 128; ++n) ASSERT_FALSE(std::isnan(bf16_to_f32(y[size_t(128 + n)]))) << v->variant;
  }
}

// Every non-NaN weight code through each variant's decode, exactly: row n of the weight holds
// one code in column 0, the scale is 1 and x = e_0 (weight-only, so no activation rounding).
TEST(Fp8Gemm, EveryWeightCodeDecodesExactly) {
  auto& c = test::ctx();
  const int64_t N = 256, K = 128;
  std::vector<uint8_t> w(size_t(N * K), 0);
  for (int64_t n = 0; n < N; ++n) w[size_t(n * K)] = (n & 0x7F) == 0x7F ? 0x00 : uint8_t(n);
  float one = 1.0f;
  StTensor tw, ts;
  tw.name = "weight";
  tw.dtype = StDType::kF8E4M3;
  tw.shape = {N, K};
  tw.data = w.data();
  tw.nbytes = w.size();
  ts.name = "weight_scale";
  ts.dtype = StDType::kF32;
  ts.shape = {};
  ts.data = reinterpret_cast<const uint8_t*>(&one);
  ts.nbytes = 4;
  Fp8Checkpoint ck;
  ck.weight = &tw;
  ck.weight_scale = &ts;
  Fp8Packed packed = repack_fp8(ck);
  std::vector<uint16_t> x(K, 0);
  x[0] = 0x3F80;  // bf16 1.0
  cl::Buffer dx = c.alloc(K * 2), dy = c.alloc(N * 4);
  c.write(dx, x.data(), K * 2);
  for (const char* tuning : {"cpu", "gpu"}) {
    test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
    Fp8Gemm op(c, packed);
    for (auto* v : supported_variants("w8a16_gemm", c.features())) {
      Fp8RunOptions opt;
      opt.act = Fp8Act::kNone;
      opt.variant = v->variant;
      op.run(dx, DType::kBF16, dy, DType::kF32, 1, opt);
      std::vector<float> y(N);
      c.read(dy, y.data(), N * 4);
      for (int64_t n = 0; n < N; ++n) {
        float want = e4m3_to_f32(w[size_t(n * K)]);
        ASSERT_EQ(y[size_t(n)], want) << tuning << " " << v->variant << " code 0x" << std::hex << int(w[size_t(n * K)]);
        if (want != 0.0f) {  // -0 plus the +0 accumulator start is +0: arithmetic, not decode
          ASSERT_EQ(std::signbit(y[size_t(n)]), std::signbit(want))
              << "sign of code 0x" << std::hex << int(w[size_t(n * K)]);
        }
      }
    }
  }
}

// ---- bad input --------------------------------------------------------------------------------

namespace {
struct MutableFp8 {
  Fp8Synth synth;
  Fp8Checkpoint ck;
  StTensor weight, scale, input_scale;
  std::vector<uint8_t> wdata;
  std::vector<float> sdata;
  explicit MutableFp8(bool block)
      : synth([&] {
          Fp8SynthSpec s;
          s.N = 200;
          s.K = 300;
          s.block = block;
          s.with_input_scale = !block;
          return s;
        }()),
        ck(synth.checkpoint()) {
    weight = *ck.weight;
    wdata.assign(weight.data, weight.data + weight.nbytes);
    weight.data = wdata.data();
    ck.weight = &weight;
    const StTensor* sc = block ? ck.weight_scale_inv : ck.weight_scale;
    scale = *sc;
    sdata.resize(scale.nbytes / 4);
    std::memcpy(sdata.data(), scale.data, scale.nbytes);
    scale.data = reinterpret_cast<const uint8_t*>(sdata.data());
    (block ? ck.weight_scale_inv : ck.weight_scale) = &scale;
    if (ck.input_scale) {
      input_scale = *ck.input_scale;
      ck.input_scale = &input_scale;
    }
  }
};

void expect_reject(const Fp8Checkpoint& ck, Status want, const std::string& needle) {
  try {
    repack_fp8(ck);
    ADD_FAILURE() << "expected rejection containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), want) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}
}  // namespace

// compressed-tensors stores its scales in the observed weights' dtype (bf16 for most models):
// block, per-tensor and input scales in BF16 or F16 are widened exactly, and checked as F32 ones.
TEST(Fp8Formats, Bf16AndF16ScalesWidenExactly) {
  for (bool block : {true, false})
    for (StDType dt : {StDType::kBF16, StDType::kF16}) {
      MutableFp8 m(block);
      std::vector<uint16_t> half(m.sdata.size());
      std::vector<float> want(m.sdata.size());
      for (size_t i = 0; i < half.size(); ++i) {
        half[i] = dt == StDType::kBF16 ? f32_to_bf16(m.sdata[i]) : f32_to_fp16(m.sdata[i]);
        want[i] = load_as_f32(half.data(), i, dt == StDType::kBF16 ? DType::kBF16 : DType::kF16);
      }
      m.scale.dtype = dt;
      m.scale.data = reinterpret_cast<const uint8_t*>(half.data());
      m.scale.nbytes = half.size() * 2;
      uint16_t in_half = 0;
      if (!block) {  // the static input_scale too
        in_half = dt == StDType::kBF16 ? f32_to_bf16(0.0375f) : f32_to_fp16(0.0375f);
        m.input_scale.dtype = dt;
        m.input_scale.data = reinterpret_cast<const uint8_t*>(&in_half);
        m.input_scale.nbytes = 2;
      }
      const Fp8Packed p = repack_fp8(m.ck);
      if (block) {
        ASSERT_EQ(p.sw.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(p.sw[i], want[i]) << i;
      } else {
        for (float v : p.sw) EXPECT_EQ(v, want[0]);
        ASSERT_TRUE(p.input_scale);
        EXPECT_EQ(*p.input_scale, load_as_f32(&in_half, 0, dt == StDType::kBF16 ? DType::kBF16 : DType::kF16));
      }
      half[0] = dt == StDType::kBF16 ? f32_to_bf16(-2.0f) : f32_to_fp16(-2.0f);
      expect_reject(m.ck, Status::kInvalidArgument, "is not a positive finite number");
    }
}

TEST(Fp8BadInput, EachRuleHasItsOwnError) {
  {
    MutableFp8 m(true);
    m.weight.dtype = StDType::kF16;
    expect_reject(m.ck, Status::kFormatError, "expected F8_E4M3");
  }
  {
    MutableFp8 m(true);
    m.weight.dtype = StDType::kF8E5M2;
    expect_reject(m.ck, Status::kNotSupported, "F8_E5M2");
  }
  {
    MutableFp8 m(true);
    m.weight.shape = {60000};
    expect_reject(m.ck, Status::kInvalidShape, "expected [N, K]");
  }
  {
    MutableFp8 m(true);
    m.scale.shape = {2, 2};
    expect_reject(m.ck, Status::kInvalidShape, "[ceil(N/128), ceil(K/128)] = [2, 3]");
  }
  {
    MutableFp8 m(true);
    m.scale.shape = {3, 3};
    expect_reject(m.ck, Status::kInvalidShape, "weight_scale_inv");
  }
  {
    MutableFp8 m(true);
    m.scale.dtype = StDType::kI32;
    expect_reject(m.ck, Status::kFormatError, "expected F32, BF16, F16 or F8_E8M0");
  }
  {
    MutableFp8 m(false);
    m.scale.dtype = StDType::kF64;
    expect_reject(m.ck, Status::kFormatError, "expected F32, BF16 or F16");
  }
  {
    MutableFp8 m(true);
    m.sdata[4] = NAN;
    expect_reject(m.ck, Status::kInvalidArgument, "[1][1] = nan is not a positive finite number");
  }
  // Block scales have the per-tensor scale's rule: finite and > 0 (issue 16).
  for (float bad : {0.0f, -1.0f, INFINITY, -0.0f}) {
    MutableFp8 m(true);
    m.sdata[5] = bad;
    expect_reject(m.ck, Status::kInvalidArgument, "[1][2] = ");
  }
  {
    MutableFp8 m(true);
    m.wdata[301] = 0xFF;
    expect_reject(m.ck, Status::kInvalidArgument, "[1][1] holds the e4m3 NaN code");
  }
  {
    MutableFp8 m(true);
    m.ck.weight_scale_inv = nullptr;
    expect_reject(m.ck, Status::kFormatError, "neither");
  }
  {
    MutableFp8 m(false);
    MutableFp8 b(true);
    m.ck.weight_scale_inv = &b.scale;
    expect_reject(m.ck, Status::kInvalidArgument, "both");
  }
  {
    MutableFp8 m(false);
    m.scale.shape = {2};
    expect_reject(m.ck, Status::kInvalidShape, "expected a scalar");
  }
  {
    MutableFp8 m(false);
    m.sdata[0] = -1.0f;
    expect_reject(m.ck, Status::kInvalidArgument, "not a positive finite number");
  }
  {
    MutableFp8 m(true);
    MutableFp8 t(false);
    m.ck.input_scale = &t.input_scale;
    expect_reject(m.ck, Status::kInvalidArgument, "block scales");
  }
}

TEST(Fp8BadInput, RunArgumentsLeaveOutputUntouched) {
  auto& c = test::ctx();
  Fp8SynthSpec spec;
  spec.N = 128;
  spec.K = 256;
  Fp8Synth synth(spec);
  Fp8Gemm op(c, repack_fp8(synth.checkpoint()));
  cl::Buffer dx = c.alloc(4 * 256 * 2), dy = c.alloc(4 * 128 * 2);
  c.fill_u32(dy, 0x5A5A5A5Au, 4 * 128 * 2);
  auto expect_fail = [&](int64_t M, DType xt, Fp8Act act, const std::string& needle) {
    Fp8RunOptions opt;
    opt.act = act;
    try {
      op.run(dx, xt, dy, DType::kBF16, M, opt);
      ADD_FAILURE() << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    c.finish();
    std::vector<uint32_t> y(4 * 128 / 2);
    c.read(dy, y.data(), y.size() * 4);
    for (uint32_t v : y) ASSERT_EQ(v, 0x5A5A5A5Au) << needle;
  };
  expect_fail(0, DType::kBF16, Fp8Act::kBlockDynamic, "M = 0");
  expect_fail(5, DType::kBF16, Fp8Act::kBlockDynamic, "input buffer holds");
  expect_fail(2, DType::kBF16, Fp8Act::kTensorStatic, "does not fit block-scaled");
  expect_fail(2, DType::kF32, Fp8Act::kNone, "not f32");
}

// The wgmma kernels' rewrite, as text on any device: the e4m3 marker's 64 accumulators, two
// descriptors and the scale-d register land where wgmma wants them, and the stage array's size
// is checked against ptxas's static .shared limit.
TEST(Fp8Wgmma, PatchExpandsTheMarkersOfTheKernel) {
  std::string acc;
  for (int i = 0; i < 64; ++i) acc += " %f" + std::to_string(100 + i);
  const std::string ptx = ".version 9.0\n.target sm_90\n.address_size 64\n.entry k()\n{\n"
                          "\t// CLQ_WG_SMEM_BASE %r5\n\t// CLQ_WG_PROXY\n\t// CLQ_WG_FENCE\n"
                          "\t// CLQ_WG_MMA_E4M3_N128" + acc + " %rd7 %rd8 %r9\n\t// CLQ_WG_COMMIT\n"
                          "\t// CLQ_WG_WAIT0" + acc + "\n\tret;\n}\n";
  const std::string out = apply_ptx_patch(ptx, wgmma_patch(4 * 32768));
  EXPECT_NE(out.find(".target sm_90a\n"), std::string::npos);
  EXPECT_NE(out.find(".address_size 64\n.shared .align 1024 .b8 clq_wg_smem[131072];\n"), std::string::npos) << out;
  EXPECT_NE(out.find("mov.u32 %r5, clq_wg_smem;"), std::string::npos);
  EXPECT_NE(out.find("setp.ne.b32 %clq_p, %r9, 0;"), std::string::npos);
  EXPECT_NE(out.find("m64n128k32.f32.e4m3.e4m3 {%f100, %f101, "), std::string::npos) << out;
  EXPECT_NE(out.find(", %f163}, %rd7, %rd8, %clq_p, 1, 1;"), std::string::npos) << out;
  EXPECT_NE(out.find("wgmma.wait_group.sync.aligned 0;"), std::string::npos);
  EXPECT_EQ(out.find("CLQ_"), std::string::npos);
  EXPECT_THROW(wgmma_patch(kMaxWgmmaSmem + 1024), Error);
  EXPECT_THROW(wgmma_patch(1000), Error);
  EXPECT_NE(wgmma_patch(4 * 32768).key(), wgmma_patch(5 * 32768).key());
}
