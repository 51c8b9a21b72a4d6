// W4A8 (SPEC section 7) against its fp64 reference on the same quantized activations, through
// every int4 variant the device supports, with poisoned outputs; and its bad-input rules.
#include <gtest/gtest.h>

#include "host/caps/caps.h"
#include "host/ops/w4a8/w4a8_gemm.h"
#include "host/reference/fp8_reference.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

namespace {
struct Case {
  W4Format format;
  int64_t M, N, K;
  int gs;
  bool act_order;
  Fp8Act act;
  DType dt;
};

void run_case(const Case& cs, uint64_t seed) {
  SCOPED_TRACE(std::string(w4_format_name(cs.format)) + " M" + std::to_string(cs.M) + " N" + std::to_string(cs.N) +
               " K" + std::to_string(cs.K) + " g" + std::to_string(cs.gs) + " " + fp8_act_name(cs.act) + " " +
               dtype_name(cs.dt) + " seed " + std::to_string(seed));
  auto& c = test::ctx();
  W4SynthSpec spec;
  spec.format = cs.format;
  spec.K = cs.K;
  spec.N = cs.N;
  spec.group_size = cs.gs;
  spec.act_order = cs.act_order;
  spec.seed = seed;
  W4Synth synth(spec);
  const W4Checkpoint ck = synth.checkpoint();
  auto x = random_activations(cs.M, cs.K, cs.dt, seed ^ 0x33);
  const float st = 1.0f / 448.0f;  // activations in [-1, 1)
  const auto ref = w4a8_reference(ck, x.data(), cs.dt, cs.M, cs.act, st);
  const size_t yb = size_t(cs.M * cs.N) * dtype_size(cs.dt);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(yb);
  c.write(dx, x.data(), x.size());
  W4A8Gemm op(c, ck);
  auto int4 = supported_variants("w4a16_gemm", c.features());
  ASSERT_GE(int4.size(), 2u);
  for (auto* v : int4) {
    SCOPED_TRACE(std::string("int4 variant ") + v->variant);
    c.fill_u32(dy, 0xFFFFFFFFu, yb);
    W4A8RunOptions o;
    o.act = cs.act;
    o.input_scale = st;
    o.int4_variant = v->variant;
    OpEvents ev = op.run(dx, cs.dt, dy, cs.dt, cs.M, o);
    ASSERT_NE(ev.row, nullptr);
    EXPECT_STREQ(ev.row->op, "w4a8_gemm");
    std::vector<uint8_t> y(yb);
    c.read(dy, y.data(), yb);
    ErrorStats e = compare_output(y.data(), cs.dt, ref);
    EXPECT_EQ(e.nan_count, 0u);
    EXPECT_LT(e.rel_mean(), 1e-3) << "max abs err " << e.max_abs_err;
    EXPECT_GT(e.mean_abs_ref, 0.0);
  }
}
}  // namespace

TEST(W4A8, AgainstFp64OnTheSameQuantizedActivations) {
  const uint64_t s = test::seed() + 400;
  run_case({W4Format::kGptq, 1, 264, 512, 128, true, Fp8Act::kTokenDynamic, DType::kBF16}, s);
  run_case({W4Format::kGptqV2, 5, 136, 384, 64, false, Fp8Act::kTokenDynamic, DType::kF16}, s + 1);
  run_case({W4Format::kAwq, 33, 128, 256, 32, false, Fp8Act::kTensorDynamic, DType::kBF16}, s + 2);
  run_case({W4Format::kCompressedTensors, 17, 72, 520, -1, false, Fp8Act::kTensorStatic, DType::kF32}, s + 3);
}

// The activations really are quantized: the result differs from W4A16 on the same inputs, by
// about the e4m3 rounding of x, and equals the reference built on e4m3 codes.
TEST(W4A8, DiffersFromW4A16ByTheActivationRounding) {
  auto& c = test::ctx();
  W4SynthSpec spec;
  spec.K = 256;
  spec.N = 64;
  spec.seed = test::seed() + 410;
  W4Synth synth(spec);
  const W4Checkpoint ck = synth.checkpoint();
  auto x = random_activations(3, 256, DType::kF32, spec.seed);
  const auto q = w4a8_reference(ck, x.data(), DType::kF32, 3, Fp8Act::kTokenDynamic);
  const auto plain = gemm_reference(x.data(), DType::kF32, 3, 256, dequantize_w4(ck), 64);
  double diff = 0, mag = 0;
  for (size_t i = 0; i < q.size(); ++i) diff += std::fabs(q[i] - plain[i]), mag += std::fabs(plain[i]);
  EXPECT_GT(diff / mag, 1e-3);  // e4m3 keeps 3 mantissa bits
  EXPECT_LT(diff / mag, 0.1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(3 * 64 * 4);
  c.write(dx, x.data(), x.size());
  W4A8Gemm op(c, ck);
  op.run(dx, DType::kF32, dy, DType::kF32, 3);
  std::vector<uint8_t> y(3 * 64 * 4);
  c.read(dy, y.data(), y.size());
  EXPECT_LT(compare_output(y.data(), DType::kF32, q).rel_mean(), 1e-5);
}

TEST(W4A8BadInput, RulesNameTheirValues) {
  auto& c = test::ctx();
  W4SynthSpec spec;
  spec.K = 128;
  spec.N = 32;
  W4Synth synth(spec);
  W4A8Gemm op(c, synth.checkpoint());
  cl::Buffer dx = c.alloc(128 * 2), dy = c.alloc(32 * 2);
  auto refused = [&](W4A8RunOptions o, int64_t M, const std::string& part) {
    c.fill_u32(dy, 0x12345678u, 32 * 2);
    try {
      op.run(dx, DType::kF16, dy, DType::kF16, M, o);
      ADD_FAILURE() << "accepted: " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
    uint32_t v = 0;
    c.read(dy, &v, 4);
    EXPECT_EQ(v, 0x12345678u) << "a refused call wrote its output";
  };
  W4A8RunOptions blk;
  blk.act = Fp8Act::kBlockDynamic;
  refused(blk, 1, "per token or per tensor");
  W4A8RunOptions st;
  st.act = Fp8Act::kTensorStatic;
  refused(st, 1, "input_scale");
  refused({}, 2, "");  // x holds one row
  W4A8RunOptions bad;
  bad.int4_variant = "no_such_variant";
  refused(bad, 1, "no_such_variant");
  W4SynthSpec s8;
  s8.K = 128;
  s8.N = 32;
  s8.bits = 8;
  W4Synth eight(s8);
  try {
    W4A8Gemm w8(c, eight.checkpoint());
    ADD_FAILURE() << "an 8-bit layer was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kNotSupported);
  }
}
