// W8A8 int8 (SPEC section 7): the device activation quantizer against its host twin (bit for
// bit), the integer GEMM against the host twin on the same quantized inputs (exact sums: equal
// after the one output rounding) and against the fp64 reference; every bad-input rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "host/caps/caps.h"
#include "host/ops/w8a8_int8/w8a8_int8_gemm.h"
#include "host/ops/wgmma_patch.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "runtime/ptx_patch.h"
#include "tests/int_layer_test_util.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

// compressed-tensors int-quantized, per channel, symmetric: what W8A8 int8 checkpoints hold.
W4Synth per_channel(int64_t N, int64_t K, uint64_t seed) {
  return W4Synth(w8a8_synth_spec(N, K, seed));
}

void poison(Context& c, const cl::Buffer& b, size_t bytes) {
  c.fill_u32(b, 0xFFFFFFFFu, bytes);
}

}  // namespace

// Every row, code and scale equal to the host twin: awkward K (not a multiple of 4 or of the 64
// work-items), every input type, a zero row (the 1e-10 clamp), rows with NaN and Inf.
TEST(W8A8Int8, QuantizerIsBitIdenticalToItsHostTwin) {
  auto& c = test::ctx();
  int i = 0;
  for (int64_t K : {4, 36, 300, 1028})
    for (DType dt : {DType::kF16, DType::kBF16, DType::kF32}) {
      SCOPED_TRACE("K " + std::to_string(K) + " " + dtype_name(dt));
      const int64_t M = 19;
      W4Synth syn = per_channel(8, K, test::seed() + uint64_t(i));
      W8A8Int8Gemm op(c, repack_w8(syn.checkpoint()));
      auto x = random_activations(M, K, dt, test::seed() + 50 + uint64_t(i++));
      // Row 3 all zero, row 5 scaled up (large codes), row 7 a NaN, row 8 an Inf.
      for (int64_t k = 0; k < K; ++k) store_from_f32(x.data(), size_t(3 * K + k), dt, 0.0f);
      for (int64_t k = 0; k < K; ++k)
        store_from_f32(x.data(), size_t(5 * K + k), dt, 300.0f * load_as_f32(x.data(), size_t(5 * K + k), dt));
      store_from_f32(x.data(), size_t(7 * K + K / 2), dt, std::nanf(""));
      store_from_f32(x.data(), size_t(8 * K), dt, INFINITY);
      cl::Buffer dx = c.alloc(x.size());
      c.write(dx, x.data(), x.size());
      op.quantize(dx, dt, M);
      std::vector<int8_t> codes;
      std::vector<float> scales;
      op.read_act(&codes, &scales);
      const Int8ActHost h = quantize_int8_act_host(x.data(), dt, M, K);
      for (int64_t m = 0; m < M; ++m) {
        uint32_t a, b;
        std::memcpy(&a, &scales[size_t(m)], 4);
        std::memcpy(&b, &h.scales[size_t(m)], 4);
        if (std::isnan(h.scales[size_t(m)])) {
          EXPECT_TRUE(std::isnan(scales[size_t(m)])) << "row " << m;
        } else {
          ASSERT_EQ(a, b) << "scale of row " << m;
        }
      }
      EXPECT_TRUE(std::isnan(h.scales[7]) && std::isnan(h.scales[8]));
      EXPECT_EQ(h.scales[3], 1e-10f / 127.0f);
      for (size_t j = 0; j < codes.size(); ++j) ASSERT_EQ(codes[j], h.codes[j]) << "code " << j;
    }
}

// The divisions themselves: 4096 rows of fp32 with amax spread over 2^-120 .. 2^120 (scales
// at every exponent, subnormal inputs in the rows) and quotients near every code, including
// exact .5 ties (x = (c + 0.5) * s, representable for these s).
TEST(W8A8Int8, QuantizerDivisionsAcrossExponents) {
  auto& c = test::ctx();
  const int64_t M = 4096, K = 8;
  W4Synth syn = per_channel(4, K, test::seed());
  W8A8Int8Gemm op(c, repack_w8(syn.checkpoint()));
  std::mt19937_64 rng(test::seed() + 900);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-120, 120), code(-127, 126);
  std::vector<float> x(size_t(M * K));
  for (int64_t m = 0; m < M; ++m) {
    const float amax = std::ldexp(1.0f + std::fabs(u(rng)), ex(rng));
    const float s = amax / 127.0f;
    x[size_t(m * K)] = m % 2 ? amax : -amax;
    x[size_t(m * K + 1)] = (float(code(rng)) + 0.5f) * s;  // a tie, up to the product's rounding
    x[size_t(m * K + 2)] = std::ldexp(u(rng), -130);     // subnormal
    for (int64_t k = 3; k < K; ++k) x[size_t(m * K + k)] = u(rng) * amax;
  }
  cl::Buffer dx = c.alloc(x.size() * 4);
  c.write(dx, x.data(), x.size() * 4);
  op.quantize(dx, DType::kF32, M);
  std::vector<int8_t> codes;
  std::vector<float> scales;
  op.read_act(&codes, &scales);
  const Int8ActHost h = quantize_int8_act_host(x.data(), DType::kF32, M, K);
  for (int64_t m = 0; m < M; ++m) ASSERT_EQ(scales[size_t(m)], h.scales[size_t(m)]) << "row " << m;
  for (size_t j = 0; j < codes.size(); ++j) ASSERT_EQ(codes[j], h.codes[j]) << "code " << j << " x " << x[j];
}

// The GEMM, every variant this device runs (and split-K where the variant splits): equal to the
// host twin after the output rounding (fp32 output: bit for bit), and within the int8 tolerance
// of the fp64 reference over the dequantized weights and activations.
TEST(W8A8Int8, GemmMatchesTheHostTwinExactly) {
  auto& c = test::ctx();
  struct Shape {
    int64_t M, N, K;
    DType dt;
  };
  int i = 0;
  for (const Shape& s : {Shape{1, 20, 36, DType::kF16}, Shape{3, 64, 256, DType::kBF16}, Shape{17, 132, 1028, DType::kF32},
                         Shape{65, 40, 4, DType::kF16}, Shape{129, 72, 300, DType::kBF16},
                         Shape{300, 260, 1100, DType::kF16}}) {
    SCOPED_TRACE("M " + std::to_string(s.M) + " N " + std::to_string(s.N) + " K " + std::to_string(s.K) + " " +
                 dtype_name(s.dt));
    W4Synth syn = per_channel(s.N, s.K, test::seed() + 200 + uint64_t(i));
    W8A8Int8Gemm op(c, repack_w8(syn.checkpoint()));
    auto x = random_activations(s.M, s.K, s.dt, test::seed() + 300 + uint64_t(i++));
    cl::Buffer dx = c.alloc(x.size());
    c.write(dx, x.data(), x.size());
    for (const VariantRow* v : supported_variants("w8a8_int8_gemm", c.features()))
    for (int splits : {0, 3})
    for (DType yt : {s.dt, DType::kF32}) {
      if (splits && std::string(v->variant) == "portable") continue;  // it does not split K
      SCOPED_TRACE(std::string(v->variant) + " splits " + std::to_string(splits) + " -> " + dtype_name(yt));
      const size_t yb = size_t(s.M * s.N) * dtype_size(yt);
      cl::Buffer dy = c.alloc(yb);
      poison(c, dy, yb);
      W8A8Int8RunOptions opt;
      opt.variant = v->variant;
      opt.splits = splits;
      OpEvents ev = op.run(dx, s.dt, dy, yt, s.M, opt);
      ASSERT_TRUE(ev.row);
      EXPECT_STREQ(ev.row->op, "w8a8_int8_gemm");
      EXPECT_STREQ(ev.row->variant, v->variant);
      std::vector<uint8_t> y(yb);
      c.read(dy, y.data(), yb);
      const Int8ActHost h = quantize_int8_act_host(x.data(), s.dt, s.M, s.K);
      const std::vector<float> twin = w8a8_int8_host(op.weights(), h);
      for (int64_t j = 0; j < s.M * s.N; ++j) {
        std::vector<uint8_t> want(dtype_size(yt));
        store_from_f32(want.data(), 0, yt, twin[size_t(j)]);
        ASSERT_EQ(0, std::memcmp(want.data(), y.data() + size_t(j) * dtype_size(yt), dtype_size(yt))) << "element " << j;
      }
      // fp64 over the same quantized operands: codes times scales, both sides.
      std::vector<double> ref(size_t(s.M * s.N), 0.0);
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n) {
          double acc = 0;
          for (int64_t k = 0; k < s.K; ++k)
            acc += double(h.codes[size_t(m * s.K + k)]) * double(op.weights().w[size_t(n * s.K + k)]);
          ref[size_t(m * s.N + n)] = acc * double(h.scales[size_t(m)]) * double(op.weights().sw[size_t(n)]);
        }
      ErrorStats e = compare_output(y.data(), yt, ref);
      EXPECT_EQ(e.nan_count, 0u);
      EXPECT_LT(e.rel_mean(), 1e-3);
      EXPECT_GT(e.mean_abs_ref, 0.0);
      // The weights the op uses are the checkpoint's (fp64 dequantization: w * s_w).
      const std::vector<double> deq = dequantize_w4(syn.checkpoint());
      EXPECT_DOUBLE_EQ(deq[size_t(1 * s.N + 2)], double(op.weights().w[size_t(2 * s.K + 1)]) * op.weights().sw[2]);
    }
  }
}

TEST(W8A8Int8BadInput, WeightAndCallRules) {
  auto& c = test::ctx();
  W4SynthSpec s = w8a8_synth_spec(64, 256, test::seed());
  s.group_size = 64;  // grouped: no per-channel scale
  test::expect_error([&] { W8A8Int8Gemm(c, repack_w8(W4Synth(s).checkpoint())); }, Status::kInvalidArgument,
                     "one scale per output channel");
  s.group_size = -1;
  s.symmetric = false;  // zero points
  test::expect_error([&] { W8A8Int8Gemm(c, repack_w8(W4Synth(s).checkpoint())); }, Status::kInvalidArgument,
                     "must be symmetric");
  s.symmetric = true;
  s.act_order = true;
  s.group_size = 128;
  test::expect_error([&] { W8A8Int8Gemm(c, repack_w8(W4Synth(s).checkpoint())); }, Status::kInvalidArgument,
                     "one scale per output channel");
  W4Synth big = per_channel(4, kW8A8MaxK + 5 - (kW8A8MaxK + 5) % 4, test::seed());
  test::expect_error([&] { W8A8Int8Gemm(c, repack_w8(big.checkpoint())); }, Status::kInvalidShape, "int32 sums");
  W4Synth ok = per_channel(64, 256, test::seed());
  W8A8Int8Gemm op(c, repack_w8(ok.checkpoint()));
  cl::Buffer x = c.alloc(3 * 256 * 2), y = c.alloc(3 * 64 * 2);
  test::expect_error([&] { op.run(x, DType::kF16, y, DType::kF16, 0); }, Status::kInvalidArgument, "M = 0");
  test::expect_error([&] { op.run(x, DType::kF16, y, DType::kF16, 4); }, Status::kInvalidArgument, "input buffer holds");
  test::expect_error([&] { op.run(x, DType::kF16, y, DType::kF32, 3); }, Status::kInvalidArgument, "output buffer holds");
}

// The s8 wgmma marker (nv_wgmma_s8) becomes the integer instruction, which takes no input scales
// or transposes; a kernel of the other operand type is refused rather than left half patched.
TEST(W8A8Int8Wgmma, PatchExpandsTheIntegerMarker) {
  std::string acc;
  for (int i = 0; i < 64; ++i) acc += " %r" + std::to_string(100 + i);
  const std::string head = ".version 9.0\n.target sm_90\n.address_size 64\n.entry k()\n{\n"
                           "\t// CLQ_WG_SMEM_BASE %r5\n\t// CLQ_WG_PROXY\n\t// CLQ_WG_FENCE\n";
  const std::string tail = "\t// CLQ_WG_COMMIT\n\t// CLQ_WG_WAIT0" + acc + "\n\tret;\n}\n";
  const std::string ptx = head + "\t// CLQ_WG_MMA_S8_N128" + acc + " %rd7 %rd8 %r9\n" + tail;
  const std::string out = apply_ptx_patch(ptx, wgmma_patch(6 * 32768 + 1024, WgmmaOperands::kS8));
  EXPECT_NE(out.find("m64n128k32.s32.s8.s8 {%r100, %r101, "), std::string::npos) << out;
  EXPECT_NE(out.find(", %r163}, %rd7, %rd8, %clq_p;"), std::string::npos) << out;
  EXPECT_EQ(out.find("CLQ_"), std::string::npos);
  EXPECT_NE(wgmma_patch(6 * 32768 + 1024, WgmmaOperands::kS8).key(), wgmma_patch(6 * 32768 + 1024).key());
  const std::string e4m3 = head + "\t// CLQ_WG_MMA_E4M3_N128" + acc + " %rd7 %rd8 %r9\n" + tail;
  EXPECT_THROW(apply_ptx_patch(e4m3, wgmma_patch(6 * 32768 + 1024, WgmmaOperands::kS8)), Error);
}
