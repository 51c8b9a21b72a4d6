// W8A16 int8 (SPEC section 7): GPTQ 8-bit v1/v2 and compressed-tensors int8 against the fp64
// reference on the dequantized checkpoint weights, on every variant this device supports, with
// poisoned outputs; the loader's decisions; and every bad-input rule.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "host/caps/caps.h"
#include "host/formats/loader.h"
#include "host/formats/w8.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/int_layer_test_util.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

// kCompressedTensors with iq: int-quantized (I8 weight) instead of pack-quantized.
struct Case {
  W4Format format;
  bool iq;
  int64_t M, N, K;
  int gs;
  bool act, sym;
  DType dt;
};

std::string name(const Case& c) {
  return std::string(w4_format_name(c.format)) + (c.iq ? " int-quantized" : "") + " M" + std::to_string(c.M) + " N" +
         std::to_string(c.N) + " K" + std::to_string(c.K) + " g" + std::to_string(c.gs) + (c.act ? " act" : "") +
         (c.sym ? " sym" : " asym") + " " + dtype_name(c.dt);
}

W4SynthSpec spec_of(const Case& cs, uint64_t seed) {
  W4SynthSpec s;
  s.format = cs.format;
  s.bits = 8;
  s.ct_int_quantized = cs.iq;
  s.K = cs.K;
  s.N = cs.N;
  s.group_size = cs.gs;
  s.act_order = cs.act;
  s.symmetric = cs.sym;
  s.seed = seed;
  return s;
}

// Runs `ck` on every supported variant (and gemv with forced split-K) in both device layouts,
// poisoning the output before each launch.
void run_checkpoint(const W4Checkpoint& ck, int64_t M, DType dt, uint64_t seed) {
  auto& c = test::ctx();
  const W8Packed packed = repack_w8(ck);
  const int64_t K = packed.K, N = packed.N;
  auto x = random_activations(M, K, dt, seed ^ 0x5555);
  auto ref = gemm_reference(x.data(), dt, M, K, dequantize_w4(ck), N);
  const size_t ybytes = size_t(M * N) * dtype_size(dt);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(ybytes);
  c.write(dx, x.data(), x.size());
  std::vector<std::pair<std::string, int>> runs;
  for (auto* v : supported_variants("w8a16_int8_gemm", c.features())) runs.push_back({v->variant, 0});
  runs.push_back({"gemv", 3});  // split-K ranges that start and end inside groups
  ASSERT_GE(runs.size(), 3u) << "expected the gemv and tiled variants";
  for (const char* tuning : {"cpu", "gpu"}) {
    test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
    W8A16Int8Gemm op(c, packed);
    for (auto& [variant, splits] : runs) {
      SCOPED_TRACE(std::string("tuning ") + tuning + ", variant " + variant + ", splits " + std::to_string(splits));
      c.fill_u32(dy, 0xFFFFFFFFu, ybytes);  // NaN in every output type: an unwritten element fails
      W4A16RunOptions opt;
      opt.variant = variant;
      opt.splits = splits;
      OpEvents ev = op.run(dx, dt, dy, dt, M, opt);
      ASSERT_TRUE(ev.row);
      EXPECT_STREQ(ev.row->op, "w8a16_int8_gemm");
      EXPECT_EQ(ev.row->variant, variant);
      std::vector<uint8_t> y(ybytes);
      c.read(dy, y.data(), ybytes);
      ErrorStats e = compare_output(y.data(), dt, ref);
      EXPECT_EQ(e.nan_count, 0u);
      EXPECT_LT(e.rel_mean(), W8A16Int8Problem::kTolerance) << "max abs err " << e.max_abs_err;
      EXPECT_GT(e.mean_abs_ref, 0.0);
    }
  }
}

void run_case(const Case& cs, uint64_t seed) {
  SCOPED_TRACE(name(cs) + " seed " + std::to_string(seed));
  W4Synth synth(spec_of(cs, seed));
  run_checkpoint(synth.checkpoint(), cs.M, cs.dt, seed);
}

const W4Format kG1 = W4Format::kGptq, kG2 = W4Format::kGptqV2, kCt = W4Format::kCompressedTensors;
const DType kDts[] = {DType::kF16, DType::kBF16};
const int kGroups[] = {32, 64, 128, -1};

struct Fmt {
  W4Format f;
  bool iq;
};
const Fmt kFmts[] = {{kG1, false}, {kG2, false}, {kCt, false}, {kCt, true}};

}  // namespace

// Every awkward M, each with another combination of format, group, act-order, symmetry, dtype.
TEST(W8A16Int8, AwkwardM) {
  const int64_t Ms[] = {1, 2, 3, 7, 16, 17, 33, 65, 129};
  int i = 0;
  for (int64_t M : Ms) {
    const Fmt f = kFmts[i % 4];
    run_case({f.f, f.iq, M, 264, 512, kGroups[(i / 2) % 4], i % 3 == 0, i % 5 == 0, kDts[(i / 4) % 2]},
             test::seed() + uint64_t(i));
    ++i;
  }
}

// Every format x group size x act-order x symmetry, M = 3.
TEST(W8A16Int8, FormatGroupMatrix) {
  int i = 0;
  for (const Fmt& f : kFmts)
    for (int gs : kGroups)
      for (bool act : {false, true})
        for (bool sym : {false, true}) {
          run_case({f.f, f.iq, 3, 68, 256, gs, act, sym, kDts[i % 2]}, test::seed() + 100 + uint64_t(i));
          ++i;
        }
}

// N and K off every tile (64-column tiles, 32-row K steps), K not a multiple of the group size
// (with g_idx), the smallest legal layer, fp32 activations.
TEST(W8A16Int8, AwkwardShapes) {
  const uint64_t s = test::seed() + 1000;
  run_case({kG1, false, 17, 20, 36, -1, false, false, DType::kF16}, s);
  run_case({kG2, false, 5, 76, 100, 32, true, false, DType::kBF16}, s + 1);   // K % 32 != 0, g_idx
  run_case({kCt, false, 33, 132, 1028, 128, true, true, DType::kF16}, s + 2);
  run_case({kCt, true, 3, 4, 4, -1, false, true, DType::kBF16}, s + 3);
  run_case({kG1, false, 64, 64, 32, 32, false, false, DType::kF32}, s + 4);   // exactly one tile
  run_case({kCt, true, 129, 200, 260, 4, false, false, DType::kF32}, s + 5);  // groups of one word
  run_case({kG2, false, 1, 4100, 96, 32, false, true, DType::kF16}, s + 6);
}

// The v1 hazard at 8 bits: a v1 file that stores 255 means zero 256 (stored zero - 1 wrapped),
// outside a byte; the kernels' u16 zeros and the accessor must agree. The same tensors read as v2
// mean zero 255: every weight moves by exactly one scale.
TEST(W8A16Int8, V1ZeroOf256AndV1V2Differ) {
  W4SynthSpec s = spec_of({kG1, false, 1, 68, 128, 32, true, false, DType::kF16}, test::seed() + 2000);
  W4Synth synth(s);
  W4Checkpoint ck = synth.checkpoint();
  std::vector<int32_t> zeros(ck.qzeros->nbytes / 4, int32_t(0xFFFFFFFFu));
  StTensor qz = *ck.qzeros;
  qz.data = reinterpret_cast<const uint8_t*>(zeros.data());
  ck.qzeros = &qz;
  W4Accessor a(ck);
  EXPECT_EQ(a.z(0, 0), 256u);
  EXPECT_EQ(repack_w8(ck).zeros[0], 256);
  for (DType dt : kDts) run_checkpoint(ck, 7, dt, test::seed() + 2001);
  W4Checkpoint v2 = ck;
  v2.format = kG2;
  const auto w1 = dequantize_w4(ck), w2 = dequantize_w4(v2);
  for (int64_t k = 0; k < 128; ++k)
    for (int64_t n = 0; n < 68; ++n) {
      const size_t i = size_t(k * 68 + n);
      ASSERT_DOUBLE_EQ(w2[i] - w1[i], double(a.s(a.group(k), n))) << k << "," << n;
    }
}

// The accessors read the formats as SPEC section 7 writes them: byte k % 4 along K for GPTQ,
// signed I8 plus 128 for int-quantized; a plain GPTQ file's words are the kernel's words.
TEST(W8A16Int8, AccessorsAndRepackLayout) {
  W4Synth g(spec_of({kG2, false, 1, 8, 64, 32, false, false, DType::kF16}, test::seed() + 3000));
  const W4Checkpoint ck = g.checkpoint();
  W4Accessor a(ck);
  int32_t w;
  std::memcpy(&w, ck.qweight->data + 4 * (1 * 8 + 5), 4);  // word [1][5]: rows 4..7 of column 5
  EXPECT_EQ(a.q(6, 5), (uint32_t(w) >> 16) & 0xFFu);
  const W8Packed p = repack_w8(ck);
  EXPECT_FALSE(p.act_order);
  EXPECT_EQ(0, std::memcmp(p.qw.data(), ck.qweight->data, ck.qweight->nbytes));
  EXPECT_EQ(p.gstart.back(), p.Kp / 4);

  W4Synth iq(spec_of({kCt, true, 1, 8, 64, -1, false, false, DType::kF16}, test::seed() + 3001));
  const W4Checkpoint ick = iq.checkpoint();
  W4Accessor b(ick);
  EXPECT_EQ(ick.scales->shape, (std::vector<int64_t>{8, 1}));  // per channel: weight_scale [N, 1]
  EXPECT_EQ(b.q(3, 2), uint32_t(int(int8_t(ick.qweight->data[2 * 64 + 3])) + 128));
  EXPECT_EQ(b.z(0, 7), uint32_t(int(int8_t(ick.qzeros->data[7])) + 128));

  W4Synth act(spec_of({kG1, false, 1, 8, 200, 64, true, false, DType::kF16}, test::seed() + 3002));
  const W8Packed q = repack_w8(act.checkpoint());
  EXPECT_TRUE(q.act_order);
  EXPECT_EQ(q.Kp % kW4RowAlign, 0);
  std::set<int> seen;
  for (int r : q.perm)
    if (r >= 0) {
      EXPECT_TRUE(seen.insert(r).second) << "row " << r << " twice";
    }
  EXPECT_EQ(seen.size(), 200u);
  for (int64_t gi = 0; gi < q.G; ++gi)
    for (int32_t wd = q.gstart[size_t(gi)]; wd < q.gstart[size_t(gi) + 1] && gi + 1 < q.G; ++wd)
      EXPECT_EQ(q.wgroup[size_t(wd)], gi);
}

// ---- the loader: bits from the config, the tensor names or weight_shape --------------------

namespace {
const std::string kP = "model.layers.0.mlp.down_proj";
struct TempDir {
  std::string path = test::temp_dir("w8");
  ~TempDir() { std::filesystem::remove_all(path); }
};
void write_layer(const std::string& dir, const W4Synth& syn, bool config, bool as_config_json = false) {
  SafetensorsWriter w;
  syn.add_to(w, kP);
  w.write(dir + "/model.safetensors");
  if (!config) return;
  if (as_config_json)
    std::ofstream(dir + "/config.json") << "{\"quantization_config\": " << syn.quantize_config_json() << "}";
  else
    std::ofstream(dir + "/quantize_config.json") << syn.quantize_config_json();
}
using test::expect_error;
}  // namespace

TEST(W8A16Int8, LoaderDecidesTheWidth) {
  {  // GPTQ: bits = 8 in quantize_config.json
    TempDir d;
    W4Synth syn(spec_of({kG1, false, 1, 64, 256, 64, true, false, DType::kF16}, test::seed()));
    write_layer(d.path, syn, true);
    LinearLayer l = load_linear(d.path, kP);
    ASSERT_TRUE(l.is_int8());
    EXPECT_EQ(l.w4().ck.format, kG1);
    EXPECT_EQ(l.K(), 256);
    EXPECT_EQ(l.N(), 64);
    EXPECT_NE(l.describe().find("int8"), std::string::npos) << l.describe();
    // Without the config, the same file is read at the width the option names.
    std::filesystem::remove(d.path + "/quantize_config.json");
    LoadOptions o;
    o.format = "gptq";
    o.bits = 8;
    EXPECT_TRUE(load_linear(d.path, kP, o).is_int8());
  }
  {  // compressed-tensors pack-quantized 8-bit: config, or weight_shape alone
    TempDir d;
    W4Synth syn(spec_of({kCt, false, 1, 64, 256, 128, false, false, DType::kF16}, test::seed()));
    write_layer(d.path, syn, true, true);
    EXPECT_TRUE(load_linear(d.path, kP).is_int8());
    std::filesystem::remove(d.path + "/config.json");
    LinearLayer l = load_linear(d.path, kP);
    EXPECT_TRUE(l.is_int8());
    EXPECT_EQ(l.K(), 256);
  }
  {  // int-quantized: an I8 weight, per-channel scales, with and without the config
    TempDir d;
    W4Synth syn(spec_of({kCt, true, 1, 64, 256, -1, false, true, DType::kF16}, test::seed()));
    write_layer(d.path, syn, false);
    LinearLayer l = load_linear(d.path, kP);
    ASSERT_TRUE(l.is_int8());
    EXPECT_EQ(l.w4().shape.G, 1);
    EXPECT_EQ(l.w4().ck.qzeros, nullptr);
    write_layer(d.path, syn, true, true);
    EXPECT_TRUE(load_linear(d.path, kP).is_int8());
  }
}

TEST(W8A16Int8BadInput, ConfigRules) {
  TempDir d;
  W4Synth syn(spec_of({kCt, true, 1, 64, 256, -1, false, true, DType::kF16}, test::seed()));
  write_layer(d.path, syn, false);
  // The config quantizes the activations too: W8A8 int8 in its per-token dynamic form only.
  std::ofstream(d.path + "/config.json")
      << "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
         "\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 8, \"type\": "
         "\"int\", \"symmetric\": true, \"strategy\": \"channel\"}, \"input_activations\": {\"num_bits\": 8, "
         "\"type\": \"int\", \"dynamic\": true, \"strategy\": \"token\"}}}}}";
  EXPECT_TRUE(load_linear(d.path, kP).is_w8a8());  // per token, dynamic, symmetric: W8A8 int8
  std::ofstream(d.path + "/config.json")
      << "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
         "\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 8, \"type\": "
         "\"int\", \"symmetric\": true, \"strategy\": \"channel\"}, \"input_activations\": {\"num_bits\": 8, "
         "\"type\": \"int\", \"dynamic\": false, \"strategy\": \"tensor\"}}}}}";
  expect_error([&] { load_linear(d.path, kP); }, Status::kNotSupported, "input_activations is int 8-bit, strategy 'tensor', static");
  std::ofstream(d.path + "/config.json") << "{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 3}}";
  expect_error([&] { load_linear(d.path, kP); }, Status::kNotSupported, "bits = 3");
  std::filesystem::remove(d.path + "/config.json");
  LoadOptions o;
  o.bits = 4;
  expect_error([&] { load_linear(d.path, kP, o); }, Status::kInvalidArgument, "codes are 8-bit");
  o.bits = 0;
  o.format = "gptq";
  expect_error([&] { load_linear(d.path, kP, o); }, Status::kInvalidArgument, "an I8 '.weight'");
}

// ---- bad input: each rule rejected with its own error, before any work ------------------------

namespace {
using test::Mutable;
void expect_reject(const W4Checkpoint& ck, Status want, const std::string& needle) {
  expect_error([&] { repack_w8(ck); }, want, needle);
}
}  // namespace

TEST(W8A16Int8BadInput, GptqShapesAndValues) {
  const W4SynthSpec s = spec_of({kG1, false, 1, 64, 256, 64, true, false, DType::kF16}, test::seed());
  {
    Mutable m(s);  // N not a multiple of 4: qzeros cannot pack it
    m.qweight.shape = {64, 62};
    expect_reject(m.ck, Status::kInvalidShape, "multiples of 4");
  }
  {
    Mutable m(s);  // qzeros packed 8 to a word (the int4 shape) instead of 4
    m.qzeros.shape = {4, 8};
    expect_reject(m.ck, Status::kInvalidShape, "qzeros");
  }
  {
    Mutable m(s);  // one group row of scales too few
    m.scales.shape = {3, 64};
    m.qzeros.shape = {3, 16};
    expect_reject(m.ck, Status::kInvalidShape, "ceil(K / group_size)");
  }
  {
    Mutable m(s);
    m.g_idx_data[17] = 4;
    expect_reject(m.ck, Status::kInvalidArgument, "g_idx[17] = 4 is outside [0, 4)");
  }
  {
    Mutable m(s);
    const uint16_t nan = 0x7E00;
    std::memcpy(m.scale_bytes.data() + 2 * 5, &nan, 2);
    expect_reject(m.ck, Status::kInvalidArgument, "must be finite");
  }
  {
    Mutable m(s);  // the qweight of a 4-bit layer with the same N: K/4 rows expected
    m.ck.g_idx = nullptr;
    m.qweight.shape = {32, 64};  // K = 128 at 8 bits, but 4 groups of 64 in the scales
    expect_reject(m.ck, Status::kInvalidShape, "needs ceil(K / group_size)");
  }
  {
    Mutable m(s);
    m.ck.format = W4Format::kAwq;
    expect_reject(m.ck, Status::kNotSupported, "AWQ checkpoints are 4-bit");
  }
  {
    Mutable m(s);
    m.ck.bits = 6;
    expect_reject(m.ck, Status::kNotSupported, "6-bit");
  }
  // The widths do not cross: an 8-bit layer is refused by the int4 repack and the reverse.
  Mutable m8(s);
  expect_error([&] { repack_w4(m8.ck); }, Status::kNotSupported, "8-bit layer");
  W4SynthSpec s4 = s;
  s4.bits = 4;
  Mutable m4(s4);
  expect_reject(m4.ck, Status::kNotSupported, "4-bit layer");
}

TEST(W8A16Int8BadInput, CompressedTensorsShapesAndTypes) {
  const W4SynthSpec iq = spec_of({kCt, true, 1, 64, 256, 64, false, false, DType::kF16}, test::seed());
  {
    Mutable m(iq);  // zero point packed I32 next to an unpacked I8 weight
    m.qzeros.dtype = StDType::kI32;
    expect_reject(m.ck, Status::kFormatError, "expected I8");
  }
  {
    Mutable m(iq);
    m.qzeros.shape = {64, 3};
    expect_reject(m.ck, Status::kInvalidShape, "one I8 per column and group");
  }
  {
    Mutable m(iq);  // per-channel scales for N - 1 columns
    m.scales.shape = {63, 4};
    expect_reject(m.ck, Status::kInvalidShape, "weight_scale");
  }
  {
    Mutable m(iq);
    const float inf = 1.0f / 0.0f;
    std::memcpy(m.scale_bytes.data() + 4 * 9, &inf, 4);
    expect_reject(m.ck, Status::kInvalidArgument, "must be finite");
  }
  const W4SynthSpec pq = spec_of({kCt, false, 1, 64, 256, 64, false, false, DType::kF16}, test::seed());
  {
    Mutable m(pq);  // zero points packed along N need N / 4 rows
    m.qzeros.shape = {8, 4};
    expect_reject(m.ck, Status::kInvalidShape, "packed along N");
  }
  {
    Mutable m(pq);
    m.qweight.dtype = StDType::kI16;
    expect_reject(m.ck, Status::kFormatError, "expected I32");
  }
}

TEST(W8A16Int8BadInput, CallRulesBeforeAnyLaunch) {
  auto& c = test::ctx();
  W4Synth syn(spec_of({kG2, false, 1, 64, 128, 32, false, false, DType::kF16}, test::seed()));
  W8A16Int8Gemm op(c, repack_w8(syn.checkpoint()));
  cl::Buffer x = c.alloc(3 * 128 * 2), y = c.alloc(3 * 64 * 2);
  expect_error([&] { op.run(x, DType::kF16, y, DType::kF16, 0); }, Status::kInvalidArgument, "M = 0");
  expect_error([&] { op.run(x, DType::kF16, y, DType::kF16, 4); }, Status::kInvalidArgument, "input buffer holds");
  cl::Buffer ys = c.alloc(3 * 64 * 2 - 2);
  expect_error([&] { op.run(x, DType::kF16, ys, DType::kF16, 3); }, Status::kInvalidArgument, "output buffer holds");
  W4A16RunOptions o;
  o.variant = "nv_mma_skinny";  // a w4a16 variant, not one of this op's
  expect_error([&] { op.run(x, DType::kF16, y, DType::kF16, 3, o); }, Status::kInvalidArgument, "nv_mma_skinny");
  W8Packed bad = repack_w8(syn.checkpoint());
  bad.zeros.pop_back();
  expect_error([&] { W8A16Int8Gemm(c, bad); }, Status::kInvalidArgument, "use repack_w8");
}
