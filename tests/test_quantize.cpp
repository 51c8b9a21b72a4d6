// Online weight quantization: the device op (weight_quant) against its host twin, bit for bit,
// on seeded random weights and the awkward cases (ragged groups and blocks, constant rows, tiny
// and huge magnitudes, subnormals); the written tensors read back through the loaders' own
// accessors; and the refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "host/formats/quantize.h"
#include "host/model/quantize.h"
#include "host/ops/quantize/weight_quant.h"
#include "host/reference/quantize_reference.h"
#include "runtime/status.h"
#include "test_util.h"

using namespace clq;

namespace {

struct Matrix {
  DType dt;
  int64_t N, K;
  std::vector<uint8_t> bytes;
  DenseWeight view(const std::string& name = "w") const {
    DenseWeight w;
    w.name = name;
    w.dtype = dt;
    w.N = N;
    w.K = K;
    w.data = bytes.data();
    return w;
  }
  void set(int64_t n, int64_t k, float v) { store_from_f32(bytes.data(), size_t(n * K + k), dt, v); }
};

// Random rows of N(0, 1) times a per-row magnitude spread over many decades, so scales cover
// fp16's normal and subnormal ranges.
Matrix random_matrix(DType dt, int64_t N, int64_t K, uint64_t seed, double lo_exp = -3, double hi_exp = 2) {
  Matrix m{dt, N, K, std::vector<uint8_t>(size_t(N * K) * dtype_size(dt))};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<double> ex(lo_exp, hi_exp);
  for (int64_t n = 0; n < N; ++n) {
    const float mag = float(std::pow(10.0, ex(rng)));
    for (int64_t k = 0; k < K; ++k) m.set(n, k, nd(rng) * mag);
  }
  return m;
}

void expect_equal(const QuantizedWeight& dev, const QuantizedWeight& host, const std::string& what) {
  ASSERT_EQ(dev.G, host.G) << what;
  ASSERT_EQ(dev.group, host.group) << what;
  size_t bad = 0;
  for (size_t i = 0; i < host.codes.size(); ++i)
    if (dev.codes[i] != host.codes[i] && bad++ < 5)
      ADD_FAILURE() << what << ": code [" << i / size_t(host.K) << "][" << i % size_t(host.K) << "] device "
                    << int(dev.codes[i]) << " host " << int(host.codes[i]);
  EXPECT_EQ(bad, 0u) << what << " codes differ";
  EXPECT_EQ(dev.scales16, host.scales16) << what << " fp16 scales";
  EXPECT_EQ(dev.zeros, host.zeros) << what << " zero points";
  ASSERT_EQ(dev.scales32.size(), host.scales32.size()) << what;
  for (size_t i = 0; i < host.scales32.size(); ++i)
    EXPECT_EQ(f32_bits(dev.scales32[i]), f32_bits(host.scales32[i])) << what << " fp8 block scale " << i;
}

struct Case {
  QuantMethod method;
  bool sym;
  int group;
  int64_t N, K;
};

std::string name_of(const Case& c, DType dt) {
  return std::string(quant_method_name(c.method)) + (c.sym ? " sym" : " asym") + " g" + std::to_string(c.group) +
         " [" + std::to_string(c.N) + ", " + std::to_string(c.K) + "] " + dtype_name(dt);
}

const std::vector<Case> kCases = {
    {QuantMethod::kInt4, true, 128, 24, 512},   {QuantMethod::kInt4, false, 128, 24, 512},
    {QuantMethod::kInt4, true, 64, 7, 200},     {QuantMethod::kInt4, false, 32, 9, 77},  // ragged last group
    {QuantMethod::kInt4, true, -1, 5, 300},     {QuantMethod::kInt4, false, -1, 3, 1000},
    {QuantMethod::kInt8, true, 128, 16, 384},   {QuantMethod::kInt8, false, 128, 16, 384},
    {QuantMethod::kInt8, true, -1, 11, 130},    {QuantMethod::kInt8, false, 50, 6, 130},
    {QuantMethod::kFp8Block, true, 128, 130, 300},  // ragged blocks both ways
    {QuantMethod::kFp8Block, true, 128, 257, 129},  {QuantMethod::kFp8Block, true, 128, 1, 1},
};

}  // namespace

TEST(WeightQuant, KernelIsBitIdenticalToTheHostTwin) {
  auto& c = test::ctx();
  WeightQuantizer op(c, /*poison=*/true);
  uint64_t i = 0;
  for (const Case& cs : kCases)
    for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
      const Matrix m = random_matrix(dt, cs.N, cs.K, test::seed() + 17 * i++,
                                     dt == DType::kF16 ? -3 : -6, dt == DType::kF16 ? 2 : 3);
      QuantSpec spec{cs.method, cs.group, cs.sym};
      const QuantizedWeight host = quantize_weight_host(m.view(), spec);
      QuantizedWeight dev;
      op.run(m.view(), spec, &dev);
      expect_equal(dev, host, name_of(cs, dt));
      // Sanity of the arithmetic itself. The rel error is about amax / (qmax * sqrt(12) * rms) for
      // the largest row, so a 6-sigma outlier in a 300-value row gives int4 0.25, int8 0.014.
      const double rel = quant_error(m.view(), host).rel_fro();
      const double bound = cs.method == QuantMethod::kInt4 ? 0.3 : cs.method == QuantMethod::kInt8 ? 0.02 : 0.06;
      EXPECT_LT(rel, bound) << name_of(cs, dt);
      if (cs.N * cs.K > 1) {
        EXPECT_GT(rel, 0.0) << name_of(cs, dt);  // one value alone can be exact (w = 448 s)
      }
    }
}

// Rows that stress the scale rules: constant (positive, negative, zero), one spike, magnitudes at
// fp16's subnormal scales, bf16 subnormals, and large values.
TEST(WeightQuant, AwkwardRowsAreBitIdentical) {
  auto& c = test::ctx();
  WeightQuantizer op(c, /*poison=*/true);
  const int64_t N = 12, K = 256;
  for (DType dt : {DType::kBF16, DType::kF32}) {
    Matrix m = random_matrix(dt, N, K, test::seed() + 5000);
    for (int64_t k = 0; k < K; ++k) {
      m.set(0, k, 0.75f);
      m.set(1, k, -3.0f);
      m.set(2, k, 0.0f);
      m.set(3, k, k == 77 ? 50.0f : 1e-3f);
      m.set(4, k, float((k % 17) - 8) * 1e-7f);      // fp16 subnormal scales
      m.set(5, k, float((k % 5) - 2) * 1e-39f);      // fp32/bf16 subnormal weights
      m.set(6, k, float((k % 9) - 4) * 1e-30f);      // tiny but normal
      m.set(7, k, float((k % 13) - 6) * 7e4f);       // scales near fp16's top (int4: 6e4)
      m.set(8, k, k < 128 ? 1.0f : -1.0f);
      m.set(9, k, float(k % 16) - 8.0f);             // already on the int4 grid
      m.set(10, k, (float(k % 16) - 7.5f) * 0.5f);   // ties of w / s
    }
    for (QuantMethod meth : {QuantMethod::kInt4, QuantMethod::kInt8, QuantMethod::kFp8Block})
      for (bool sym : {true, false}) {
        if (meth == QuantMethod::kFp8Block && !sym) continue;
        for (int g : {128, -1, 48}) {
          QuantSpec spec{meth, g, sym};
          const std::string what = std::string(quant_method_name(meth)) + (sym ? " sym" : " asym") + " g" +
                                   std::to_string(g) + " " + dtype_name(dt);
          QuantizedWeight host;
          try {
            host = quantize_weight_host(m.view(), spec);
          } catch (const Error& e) {
            FAIL() << what << ": " << e.what();
          }
          QuantizedWeight dev;
          try {
            op.run(m.view(), spec, &dev);
          } catch (const Error& e) {
            // int4 asym range of row 7 (+-4.2e5 over 15 steps) needs a scale above fp16's top.
            EXPECT_EQ(e.status(), Status::kInvalidArgument) << what;
            EXPECT_NE(std::string(e.what()).find("65504"), std::string::npos) << what << ": " << e.what();
            EXPECT_NO_THROW(check_quant_result(host, "w")) << "the twin accepted what the device op refused: " << what;
            continue;
          }
          expect_equal(dev, host, what);
          // An all-zero row dequantizes to exact zeros under every method.
          for (int64_t k = 0; k < K; ++k) ASSERT_EQ(host.dequant(2, k), 0.0) << what;
          // A constant row comes back within half a step of its own scale (an FP8 block spans
          // rows 0..11, so its scale is row 7's and 0.75 underflows e4m3 there).
          if (meth != QuantMethod::kFp8Block) {
            EXPECT_NEAR(host.dequant(0, 5), 0.75, meth == QuantMethod::kInt4 ? 0.75 / 14 : 0.75 / 200) << what;
          }
        }
      }
  }
}

// The written tensors, read back through the loaders' own validation and accessors
// (validate_w4 / dequantize_w4, validate_fp8 / fp8_weight_code), give the dequantized values.
TEST(WeightQuant, WrittenTensorsReadBackThroughTheLoaders) {
  uint64_t i = 0;
  for (QuantMethod meth : {QuantMethod::kInt4, QuantMethod::kInt8, QuantMethod::kFp8Block})
    for (bool sym : {true, false})
      for (int g : {64, -1}) {
        if (meth == QuantMethod::kFp8Block && (!sym || g == -1)) continue;
        const int64_t N = meth == QuantMethod::kFp8Block ? 136 : 24, K = 256;
        const Matrix m = random_matrix(DType::kBF16, N, K, test::seed() + 900 + i++);
        QuantSpec spec{meth, g, sym};
        const QuantizedWeight q = quantize_weight_host(m.view(), spec);
        const QuantizedTensors t = quantized_tensors(q, "model.layers.0.mlp.down_proj");
        const std::string what = std::string(quant_method_name(meth)) + (sym ? " sym" : " asym") + " g" + std::to_string(g);
        if (spec.is_int()) {
          const W4Checkpoint ck = t.w4();
          const W4Shape s = validate_w4(ck);
          EXPECT_EQ(s.K, K);
          EXPECT_EQ(s.N, N);
          EXPECT_EQ(s.group_size, g == -1 ? -1 : g);
          const std::vector<double> w = dequantize_w4(ck);  // [K][N]
          for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k)
              ASSERT_EQ(w[size_t(k * N + n)], q.dequant(n, k)) << what << " [" << n << "][" << k << "]";
          EXPECT_EQ(t.find(".weight_zero_point") != nullptr, !sym) << what;
        } else {
          const Fp8Checkpoint ck = t.fp8();
          const Fp8Shape s = validate_fp8(ck);
          EXPECT_TRUE(s.block);
          for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k)
              ASSERT_EQ(double(e4m3_to_f32(fp8_weight_code(ck, n, k))) * fp8_weight_scale(ck, s, n / 128, k / 128),
                        q.dequant(n, k))
                  << what;
        }
      }
}

TEST(WeightQuantBadInput, RulesAreCheckedBeforeTheLaunch) {
  auto& c = test::ctx();
  WeightQuantizer op(c);
  Matrix m = random_matrix(DType::kBF16, 8, 64, test::seed() + 77);
  QuantizedWeight out;
  auto expect_refusal = [&](const Matrix& mm, QuantSpec spec, Status st, const std::string& needle) {
    try {
      op.run(mm.view("layer.weight"), spec, &out);
      ADD_FAILURE() << "accepted; expected '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), st) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_THROW(quantize_weight_host(mm.view("layer.weight"), spec), Error) << needle;
  };
  Matrix nan = m;
  nan.set(3, 17, NAN);
  expect_refusal(nan, {QuantMethod::kInt4, 32, true}, Status::kInvalidArgument, "'layer.weight'[3][17] is nan");
  Matrix inf = m;
  inf.set(7, 63, -INFINITY);
  expect_refusal(inf, {QuantMethod::kFp8Block, 128, true}, Status::kInvalidArgument, "[7][63] is -inf");
  expect_refusal(m, {QuantMethod::kInt4, 0, true}, Status::kInvalidArgument, "group size 0");
  expect_refusal(m, {QuantMethod::kInt8, -2, true}, Status::kInvalidArgument, "group size -2");
  expect_refusal(m, {QuantMethod::kFp8Block, 128, false}, Status::kInvalidArgument, "fp8-block quantization is symmetric");
  Matrix huge = m;
  huge.set(2, 5, 1e6f);  // int4 symmetric scale 1e6 / 7 > 65504
  try {
    op.run(huge.view("layer.weight"), {QuantMethod::kInt4, 32, true}, &out);
    ADD_FAILURE() << "a scale above fp16's range was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2 group 0"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(op.run(huge.view(), {QuantMethod::kFp8Block, 128, true}, &out));  // fp32 block scales hold it
  // The written format's own limits.
  EXPECT_THROW(check_writable("L", 8, 60, {QuantMethod::kInt4, -1, true}), Error);  // K % 8
  EXPECT_THROW(check_writable("L", 6, 64, {QuantMethod::kInt4, -1, true}), Error);  // N % 8
  EXPECT_THROW(check_writable("L", 8, 192, {QuantMethod::kInt4, 128, true}), Error);  // K % group
  EXPECT_NO_THROW(check_writable("L", 4, 12, {QuantMethod::kInt8, -1, true}));
  EXPECT_NO_THROW(check_writable("L", 3, 5, {QuantMethod::kFp8Block, 128, true}));
  QuantMethod parsed;
  EXPECT_FALSE(quant_method_from_name("int3", &parsed));
  EXPECT_TRUE(quant_method_from_name("fp8-block", &parsed));
}

TEST(WeightQuant, DefaultLayerRule) {
  auto t = [](const std::string& name, std::vector<int64_t> shape = {64, 64}, StDType dt = StDType::kBF16) {
    StTensor s;
    s.name = name;
    s.shape = shape;
    s.dtype = dt;
    return default_quantizable(s);
  };
  EXPECT_TRUE(t("model.layers.0.mlp.down_proj.weight"));
  EXPECT_TRUE(t("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(t("model.layers.1.mlp.experts.3.gate_proj.weight"));
  EXPECT_FALSE(t("model.embed_tokens.weight"));
  EXPECT_FALSE(t("lm_head.weight"));
  EXPECT_FALSE(t("model.norm.weight", {64}));
  EXPECT_FALSE(t("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(t("model.layers.0.mlp.gate.weight"));
  EXPECT_FALSE(t("model.layers.0.mlp.down_proj.bias"));
  EXPECT_FALSE(t("model.layers.0.mlp.down_proj.weight", {64, 64}, StDType::kF8E4M3));
  EXPECT_FALSE(t("transformer.h.0.ln_1.weight"));
}
