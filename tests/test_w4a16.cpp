// W4A16 against the fp64 reference on the dequantized checkpoint weights (SPEC sections 2, 3, 6),
// on every variant this device supports, with poisoned outputs; and every bad-input rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "host/caps/caps.h"
#include "host/formats/quant_config.h"
#include "host/formats/w4.h"
#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/wgmma_patch.h"
#include "runtime/ptx_patch.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/int_layer_test_util.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

struct Case {
  W4Format format;
  int64_t M, N, K;
  int gs;
  bool act, sym;
  DType dt;
  float scale_multiplier = 1.0f;
};

std::string name(const Case& c) {
  return std::string(w4_format_name(c.format)) + " M" + std::to_string(c.M) + " N" + std::to_string(c.N) + " K" +
         std::to_string(c.K) + " g" + std::to_string(c.gs) + (c.act ? " act" : "") + (c.sym ? " sym" : " asym") + " " +
         dtype_name(c.dt);
}

// Runs one case on every supported variant (and gemv with forced split-K), poisoning the output
// before each launch; returns the worst relative error seen.
void run_case(const Case& cs, uint64_t seed) {
  SCOPED_TRACE(name(cs) + " seed " + std::to_string(seed));
  auto& c = test::ctx();
  W4SynthSpec spec;
  spec.format = cs.format;
  spec.K = cs.K;
  spec.N = cs.N;
  spec.group_size = cs.gs;
  spec.act_order = cs.act;
  spec.symmetric = cs.sym;
  spec.scale_multiplier = cs.scale_multiplier;
  spec.seed = seed;
  W4Synth synth(spec);
  W4Checkpoint ck = synth.checkpoint();
  W4Packed packed = repack_w4(ck);
  auto x = random_activations(cs.M, cs.K, cs.dt, seed ^ 0x5555);
  auto ref = gemm_reference(x.data(), cs.dt, cs.M, cs.K, dequantize_w4(ck), cs.N);
  const size_t ybytes = size_t(cs.M * cs.N) * dtype_size(cs.dt);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(ybytes);
  c.write(dx, x.data(), x.size());
  std::vector<std::pair<std::string, int>> runs;
  for (auto* v : supported_variants("w4a16_gemm", c.features())) runs.push_back({v->variant, 0});
  runs.push_back({"gemv", 3});  // split-K with ranges that start and end inside groups
  if (c.features().nv_mma_f16) {
    runs.push_back({"nv_mma_skinny", 3});  // in-kernel split-K: the last work-group sums
    runs.push_back({"nv_mma_tiled", 3});  // partials summed by w4a16_splitk_reduce
  }
  if (c.features().nv_wgmma && c.features().nv_mma_f16) runs.push_back({"nv_wgmma", 3});  // ranges of chunks
  ASSERT_GE(runs.size(), 3u) << "expected the gemv and tiled variants";
  // Both device layouts (CPU column blocks of 16, GPU [Kp/8][N]) on whatever device runs this.
  for (const char* tuning : {"cpu", "gpu"}) {
    test::ScopedEnv env("CLQ_GEMV_TUNING", tuning);
    W4A16Gemm op(c, packed);
    for (auto& [variant, splits] : runs) {
      SCOPED_TRACE(std::string("tuning ") + tuning + ", variant " + variant + ", splits " + std::to_string(splits));
      c.fill_u32(dy, 0xFFFFFFFFu, ybytes);  // NaN in fp32, fp16 and bf16: an unwritten element fails
      W4A16RunOptions opt;
      opt.variant = variant;
      opt.splits = splits;
      op.run(dx, cs.dt, dy, cs.dt, cs.M, opt);
      std::vector<uint8_t> y(ybytes);
      c.read(dy, y.data(), ybytes);
      ErrorStats e = compare_output(y.data(), cs.dt, ref);
      EXPECT_EQ(e.nan_count, 0u) << variant << " splits=" << splits;
      EXPECT_LT(e.rel_mean(), W4A16Problem::kTolerance)
          << variant << " splits=" << splits << " max abs err " << e.max_abs_err;
      EXPECT_GT(e.mean_abs_ref, 0.0);
    }
  }
}

const W4Format kFmts[] = {W4Format::kGptq, W4Format::kGptqV2, W4Format::kAwq};
const DType kDts[] = {DType::kF16, DType::kBF16};
const int kGroups[] = {32, 64, 128, -1};

}  // namespace

// Every awkward M, each with a different combination of the other parameters.
TEST(W4A16, AwkwardM) {
  const int64_t Ms[] = {1, 2, 3, 7, 16, 33, 127, 128, 129, 257};
  int i = 0;
  for (int64_t M : Ms) {
    W4Format f = kFmts[i % 3];
    bool act = f != W4Format::kAwq && (i % 2 == 0);
    run_case({f, M, 264, 512, kGroups[i % 4], act, i % 5 == 0, kDts[(i / 2) % 2]}, test::seed() + uint64_t(i));
    ++i;
  }
}

// Every format x group size x act-order x symmetry x dtype at a small shape, M = 3.
TEST(W4A16, FormatGroupMatrix) {
  int i = 0;
  for (W4Format f : kFmts)
    for (int gs : kGroups)
      for (bool act : {false, true}) {
        if (act && f == W4Format::kAwq) continue;
        for (bool sym : {false, true}) {
          run_case({f, 3, 128, 256, gs, act, sym, kDts[i % 2]}, test::seed() + 100 + uint64_t(i));
          ++i;
        }
      }
}

// Scales whose products with (q - z) fp16 cannot hold as normal numbers: nv_wgmma's fp16 build
// then keeps the fp32 fold instead of rounding (q - z) * s into its A registers; every variant
// stays within tolerance either way.
TEST(W4A16, TinyAndHugeScales) {
  auto& c = test::ctx();
  for (float mult : {1.0f, 1e-3f, 3e5f}) {
    W4SynthSpec spec;
    spec.K = 256;
    spec.N = 128;
    spec.scale_multiplier = mult;
    spec.seed = test::seed() + 700;
    W4Synth synth(spec);
    W4A16Gemm op(c, repack_w4(synth.checkpoint()));
    if (op.layer().has_fragment_layout()) EXPECT_EQ(op.layer().scales_fp16_safe, mult == 1.0f) << "multiplier " << mult;
  }
  run_case({W4Format::kGptq, 130, 128, 256, 64, false, false, DType::kF16, 1e-3f}, test::seed() + 701);
  run_case({W4Format::kGptq, 130, 128, 256, 64, true, false, DType::kF16, 1e-3f}, test::seed() + 702);
}

// Non-power-of-two and tile-edge shapes: N and K of 576 and 4104, K = 8, 40, 96 (the tiled
// kernel steps K by 32), N not a multiple of the 64-column tile.
// compressed-tensors pack-quantized: symmetric and asymmetric, group and channel, act-order,
// bf16 scales, both activation types, on every variant.
TEST(W4A16, CompressedTensors) {
  const W4Format ct = W4Format::kCompressedTensors;
  int i = 0;
  for (const Case& c : {Case{ct, 1, 264, 512, 128, false, false, DType::kF16}, Case{ct, 3, 128, 256, 32, true, false, DType::kBF16},
                        Case{ct, 17, 136, 384, -1, false, true, DType::kBF16}, Case{ct, 33, 64, 512, 64, true, true, DType::kF16},
                        Case{ct, 129, 72, 256, 128, false, false, DType::kBF16}})
    run_case(c, test::seed() + 500 + uint64_t(i++));
}

TEST(W4A16, AwkwardShapes) {
  const uint64_t s = test::seed() + 1000;
  run_case({W4Format::kGptq, 33, 576, 4104, 128, true, false, DType::kF16}, s);  // K % 128 != 0 with g_idx
  run_case({W4Format::kGptqV2, 7, 4104, 576, 64, false, false, DType::kBF16}, s + 1);
  run_case({W4Format::kAwq, 129, 576, 4104, -1, false, false, DType::kF16}, s + 2);
  run_case({W4Format::kGptq, 5, 72, 8, -1, false, true, DType::kF16}, s + 3);
  run_case({W4Format::kGptq, 65, 136, 40, 8, true, false, DType::kBF16}, s + 4);
  run_case({W4Format::kAwq, 2, 200, 96, 32, false, false, DType::kF16}, s + 5);
  run_case({W4Format::kGptqV2, 1, 8, 96, 32, true, true, DType::kBF16}, s + 6);
  run_case({W4Format::kGptq, 64, 64, 32, 32, false, false, DType::kF32}, s + 7);  // exactly one tile
}

namespace {

// A shuffled packed-row order for the gather tests: K activation columns in Kp packed rows, the
// rest padding (-1).
std::vector<int32_t> shuffled_perm(int64_t K, int64_t Kp) {
  std::vector<int32_t> perm(static_cast<size_t>(Kp));
  for (int64_t r = 0; r < Kp; ++r) perm[size_t(r)] = r < K ? int32_t(r * 37 % K) : -1;  // 37 is prime to 200
  return perm;
}

// Runs one of the tensor-core activation gathers of w4a16/gather.cl, whose arguments are
// (x, perm, out, M, K, Kp, extra), into an output poisoned first; returns it as 16-bit values.
std::vector<uint16_t> run_gather(const char* name, DType dt, const std::vector<uint8_t>& x, int64_t M, int64_t K,
                                 const std::vector<int32_t>& perm, int extra, size_t out_bytes,
                                 const cl::NDRange& global, const cl::NDRange& local) {
  auto& c = test::ctx();
  cl::Buffer dx = c.alloc(x.size()), dperm = c.alloc(perm.size() * 4), dout = c.alloc(out_bytes);
  c.write(dx, x.data(), x.size());
  c.write(dperm, perm.data(), perm.size() * 4);
  c.fill_u32(dout, 0xDEADBEEFu, out_bytes);
  cl::Kernel k = c.kernel("w4a16/gather.cl", name,
                          oputil::io_defines(dt, dt) + (dt == DType::kBF16 ? " -DHALF_BF16=1" : " -DHALF_BF16=0"));
  set_args(k, dx, dperm, dout, cl_int(M), cl_int(K), cl_int(perm.size()), cl_int(extra));
  launch(c, k, global, local, name);
  std::vector<uint16_t> got(out_bytes / 2);
  c.read(dout, got.data(), out_bytes);
  return got;
}

}  // namespace

// The tensor-core variant's activation staging (w4a16_gather_frag) is portable OpenCL: its
// fragment order is checked here on every device, against the layout written out on the host,
// with a shuffled permutation, padding rows and a row block past M.
TEST(W4A16, FragmentGatherLayout) {
  const int64_t M = 11, K = 200, Kp = 256, chunks = 4, blocks = 3;
  const std::vector<int32_t> perm = shuffled_perm(K, Kp);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(dt));
    auto x = random_activations(M, K, dt, test::seed() + 77);
    const uint16_t* xh = reinterpret_cast<const uint16_t*>(x.data());
    const size_t out_bytes = size_t(blocks * chunks * 32 * 32);  // 32 bytes per lane and chunk
    const std::vector<uint16_t> got = run_gather("w4a16_gather_frag", dt, x, M, K, perm, int(chunks), out_bytes,
                                                 cl::NDRange(size_t(chunks * 128), size_t(blocks)), cl::NDRange(128, 1));
    size_t checked = 0;
    for (int64_t rb = 0; rb < blocks; ++rb)
      for (int64_t ch = 0; ch < chunks; ++ch)
        for (int lane = 0; lane < 32; ++lane)
          for (int st = 0; st < 4; ++st)
            for (int j = 0; j < 4; ++j) {  // b0 = halves 0, 1; b1 = halves 2, 3
              const int64_t m = rb * 8 + lane / 4, kk = ch * 64 + st * 16 + 2 * (lane % 4) + (j / 2) * 8 + j % 2;
              const int32_t src = perm[size_t(kk)];
              const uint16_t want = m < M && src >= 0 ? xh[size_t(m * K + src)] : 0;
              const size_t at = size_t((((rb * chunks + ch) * 32 + lane) * 4 + st) * 4 + j);
              ASSERT_EQ(got[at], want) << "block " << rb << " chunk " << ch << " lane " << lane << " step " << st;
              ++checked;
            }
    EXPECT_EQ(checked, out_bytes / 2);
  }
}

// nv_mma_tiled's activation staging (w4a16_gather_h16) is portable too: 16-bit rows in packed
// order, padded to whole chunks, checked on every device with a shuffled permutation; fp32 input
// becomes fp16 (the operand type the tensor cores get for it).
TEST(W4A16, RowGatherLayout) {
  const int64_t M = 5, K = 200, Kp = 256, ld = 320;
  const std::vector<int32_t> perm = shuffled_perm(K, Kp);
  for (DType dt : {DType::kF16, DType::kBF16, DType::kF32}) {
    SCOPED_TRACE(dtype_name(dt));
    auto x = random_activations(M, K, dt, test::seed() + 78);
    const std::vector<uint16_t> got = run_gather("w4a16_gather_h16", dt, x, M, K, perm, int(ld), size_t(M * ld * 2),
                                                 cl::NDRange(64, size_t(M)), cl::NDRange(64, 1));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t kk = 0; kk < ld; ++kk) {
        const int32_t src = kk < Kp ? perm[size_t(kk)] : -1;
        uint16_t want = 0;
        if (src >= 0) {
          const size_t at = size_t(m * K + src);
          if (dt == DType::kF32) {
            float f;
            std::memcpy(&f, x.data() + at * 4, 4);
            want = f32_to_fp16(f);
          } else {
            std::memcpy(&want, x.data() + at * 2, 2);
          }
        }
        ASSERT_EQ(got[size_t(m * ld + kk)], want) << "row " << m << " column " << kk;
      }
  }
}

TEST(W4A16, IdenticalRowsGiveIdenticalOutputs) {
  auto& c = test::ctx();
  W4SynthSpec spec;
  spec.K = 256;
  spec.N = 128;
  spec.act_order = true;
  spec.seed = test::seed();
  W4Synth synth(spec);
  W4A16Gemm op(c, repack_w4(synth.checkpoint()));
  auto row = random_activations(1, 256, DType::kF16, test::seed());
  std::vector<uint8_t> x;
  for (int m = 0; m < 9; ++m) x.insert(x.end(), row.begin(), row.end());
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(9 * 128 * 2);
  c.write(dx, x.data(), x.size());
  for (auto* v : supported_variants("w4a16_gemm", c.features())) {
    W4A16RunOptions opt;
    opt.variant = v->variant;
    op.run(dx, DType::kF16, dy, DType::kF16, 9, opt);
    std::vector<uint16_t> y(9 * 128);
    c.read(dy, y.data(), y.size() * 2);
    for (int m = 1; m < 9; ++m)
      for (int n = 0; n < 128; ++n) ASSERT_EQ(y[size_t(m * 128 + n)], y[size_t(n)]) << v->variant << " row " << m;
  }
}

TEST(W4A16, RepackLayout) {
  W4SynthSpec spec;
  spec.K = 200;
  spec.N = 16;
  spec.group_size = 64;  // groups of 64, 64, 64, 8 rows under act-order
  spec.act_order = true;
  spec.seed = test::seed();
  W4Synth synth(spec);
  W4Packed p = repack_w4(synth.checkpoint());
  EXPECT_TRUE(p.act_order);
  EXPECT_EQ(p.Kp % kW4RowAlign, 0);
  std::set<int> seen;
  for (int r : p.perm) {
    if (r >= 0) {
      EXPECT_TRUE(seen.insert(r).second) << "row " << r << " twice";
    }
  }
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_EQ(p.gstart.front(), 0);
  EXPECT_EQ(p.gstart.back(), p.Kp / 8);
  for (int64_t g = 0; g + 1 < p.G; ++g) {
    for (int32_t w = p.gstart[size_t(g)]; w < p.gstart[size_t(g) + 1]; ++w) {
      EXPECT_EQ(p.wgroup[size_t(w)], g);
    }
  }
  // Without act-order, a GPTQ checkpoint's words are copied unchanged.
  spec.act_order = false;
  spec.K = 256;
  W4Synth plain(spec);
  W4Packed q = repack_w4(plain.checkpoint());
  EXPECT_FALSE(q.act_order);
  const StTensor* qw = plain.checkpoint().qweight;
  EXPECT_EQ(0, std::memcmp(q.qw.data(), qw->data, qw->nbytes));
}

// ---- bad input: each rule rejected with its own error, before anything is enqueued -----------

namespace {
using test::Mutable;
void expect_reject(const W4Checkpoint& ck, Status want, const std::string& needle) {
  test::expect_error([&] { repack_w4(ck); }, want, needle);
}
W4SynthSpec small(W4Format f = W4Format::kGptq, bool act = false) {
  W4SynthSpec s;
  s.format = f;
  s.K = 256;
  s.N = 64;
  s.group_size = 64;
  s.act_order = act;
  s.seed = 7;
  return s;
}
}  // namespace

// NaN/Inf group scales turn whole output columns into NaN: refused like the FP8 scales (issue 16).
TEST(W4A16BadInput, NonFiniteScales) {
  for (uint16_t bad : {uint16_t(0x7E00), uint16_t(0x7C00), uint16_t(0xFC00)}) {
    for (W4Format f : {W4Format::kGptq, W4Format::kAwq}) {
      Mutable m(small(f));
      std::vector<uint16_t> sd(m.scales.nbytes / 2);
      std::memcpy(sd.data(), m.scales.data, m.scales.nbytes);
      sd[64 * 2 + 5] = bad;
      m.scales.data = reinterpret_cast<const uint8_t*>(sd.data());
      expect_reject(m.ck, Status::kInvalidArgument, "[2][5] is ");
    }
  }
}

// Shapes whose products overflow 64 bits (UBSan once flagged K = shape[0] * 8 for [2^60, 0]).
// compressed-tensors scales are [N, G] and BF16 here: the same finiteness rule, element named.
TEST(W4A16BadInput, NonFiniteCompressedTensorsScales) {
  for (uint16_t bad : {uint16_t(0x7FC0), uint16_t(0x7F80), uint16_t(0xFF80)}) {
    Mutable m(small(W4Format::kCompressedTensors));
    const int64_t G = m.scales.shape[1];
    std::vector<uint16_t> sd(m.scales.nbytes / 2);
    std::memcpy(sd.data(), m.scales.data, m.scales.nbytes);
    sd[size_t(5 * G + 1)] = bad;
    m.scales.data = reinterpret_cast<const uint8_t*>(sd.data());
    expect_reject(m.ck, Status::kInvalidArgument, "[5][1] is ");
  }
}

TEST(W4A16BadInput, HugeDimensionsAreRefusedBeforeArithmetic) {
  for (std::vector<int64_t> shape : {std::vector<int64_t>{int64_t(1) << 60, 0}, std::vector<int64_t>{0, int64_t(1) << 61},
                                     std::vector<int64_t>{int64_t(1) << 29, 8}}) {
    Mutable m(small());
    m.qweight.shape = shape;
    expect_reject(m.ck, Status::kInvalidShape, "above 2^28");
  }
  Mutable z(small());
  z.qzeros.shape = {4, int64_t(1) << 62};
  expect_reject(z.ck, Status::kInvalidShape, "above 2^28");
}

// A config field of the wrong JSON type is an error naming the field, never silently ignored.
TEST(W4A16BadInput, QuantConfigFieldsOfTheWrongType) {
  const std::string dir = test::temp_dir("qcfg");
  auto expect_cfg = [&](const char* file, const std::string& json, const std::string& needle) {
    ::unlink((dir + "/quantize_config.json").c_str());
    ::unlink((dir + "/config.json").c_str());
    std::ofstream(dir + "/" + file) << json;
    try {
      read_quant_config(dir);
      ADD_FAILURE() << json << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kFormatError) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_cfg("quantize_config.json", R"({"bits":4,"group_size":"64"})", "group_size is a string, expected an integer");
  expect_cfg("quantize_config.json", R"({"bits":4,"group_size":64.5})",
             "group_size is a number with a fraction, expected an integer");
  expect_cfg("quantize_config.json", R"({"bits":"4","group_size":64})", "bits is a string");
  expect_cfg("quantize_config.json", R"({"group_size":64,"desc_act":"true"})", "desc_act is a string");
  expect_cfg("quantize_config.json", R"({"group_size":0})", "neither -1");
  expect_cfg("quantize_config.json", R"({"group_size":4294967360})", "out of range");
  expect_cfg("quantize_config.json", R"({"quant_method":["gptq"]})", "quant_method is an array");
  expect_cfg("quantize_config.json", R"({"checkpoint_format":2})", "checkpoint_format is an integer");
  expect_cfg("config.json", R"({"quantization_config":{"quant_method":"awq","q_group_size":true}})",
             "quantization_config.q_group_size is a boolean");
  expect_cfg("quantize_config.json", std::string(100, '[') + std::string(100, ']'), "nests deeper than 64");
  // null counts as absent, and a plain config is still read.
  ::unlink((dir + "/config.json").c_str());
  std::ofstream(dir + "/quantize_config.json") << R"({"bits":4,"group_size":128,"desc_act":null})";
  auto cfg = read_quant_config(dir);
  ASSERT_TRUE(cfg && cfg->group_size);
  EXPECT_EQ(*cfg->group_size, 128);
  EXPECT_FALSE(cfg->desc_act.has_value());
}

TEST(W4A16BadInput, NotMultipleOf8) {
  Mutable m(small());
  m.qweight.shape = {32, 60};  // N = 60
  m.scales.shape = {4, 60};
  expect_reject(m.ck, Status::kInvalidShape, "multiples of 8");
  Mutable a(small(W4Format::kAwq));
  a.qweight.shape = {252, 8};  // AWQ K = 252
  expect_reject(a.ck, Status::kInvalidShape, "multiples of 8");
}

TEST(W4A16BadInput, ScalesAndZerosShapes) {
  Mutable m(small());
  m.scales.shape = {4, 72};
  expect_reject(m.ck, Status::kInvalidShape, "scales");
  Mutable r(small());
  r.scales.shape = {5, 64};
  r.qzeros.shape = {5, 8};
  expect_reject(r.ck, Status::kInvalidShape, "ceil(K / group_size)");
  Mutable z(small());
  z.qzeros.shape = {4, 9};
  expect_reject(z.ck, Status::kInvalidShape, "qzeros");
  Mutable d(small());
  d.scales.dtype = StDType::kF32;
  expect_reject(d.ck, Status::kFormatError, "dtype F32");
  Mutable q(small());
  q.qweight.dtype = StDType::kF16;
  expect_reject(q.ck, Status::kFormatError, "expected I32");
}

TEST(W4A16BadInput, GIdxOutOfRange) {
  for (int32_t bad : {4, -1, 1000}) {
    Mutable m(small(W4Format::kGptq, true));
    m.g_idx_data[17] = bad;
    expect_reject(m.ck, Status::kInvalidArgument, "g_idx[17] = " + std::to_string(bad) + " is outside [0, 4)");
  }
  Mutable l(small(W4Format::kGptq, true));
  l.g_idx.shape = {200};
  expect_reject(l.ck, Status::kInvalidShape, "g_idx");
}

TEST(W4A16BadInput, KNotMultipleOfGroupWithoutGIdx) {
  W4SynthSpec s = small();
  s.K = 200;
  s.group_size = 64;
  s.act_order = true;  // generate with g_idx (4 groups), then drop it
  Mutable m(s);
  m.ck.g_idx = nullptr;
  expect_reject(m.ck, Status::kInvalidShape, "not a multiple of group size 64");
}

TEST(W4A16BadInput, MissingTensorAndAwqGIdx) {
  Mutable m(small());
  m.ck.qzeros = nullptr;
  expect_reject(m.ck, Status::kFormatError, "qzeros");
  Mutable a(small(W4Format::kAwq));
  Mutable g(small(W4Format::kGptq, true));
  a.ck.g_idx = &g.g_idx;
  expect_reject(a.ck, Status::kInvalidArgument, "AWQ");
}

TEST(W4A16BadInput, RunArgumentsLeaveOutputUntouched) {
  auto& c = test::ctx();
  W4Synth synth(small());
  W4A16Gemm op(c, repack_w4(synth.checkpoint()));
  cl::Buffer dx = c.alloc(4 * 256 * 2), dy = c.alloc(4 * 64 * 2);
  c.fill_u32(dy, 0x12345678u, 4 * 64 * 2);
  auto expect_fail = [&](int64_t M, const cl::Buffer& x, const std::string& variant, Status want,
                         const std::string& needle) {
    W4A16RunOptions opt;
    opt.variant = variant;
    try {
      op.run(x, DType::kF16, dy, DType::kF16, M, opt);
      ADD_FAILURE() << "expected failure: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), want) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    c.finish();
    std::vector<uint32_t> y(4 * 64 / 2);
    c.read(dy, y.data(), y.size() * 4);
    for (uint32_t v : y) ASSERT_EQ(v, 0x12345678u) << "output touched after rejected run (" << needle << ")";
  };
  expect_fail(0, dx, "", Status::kInvalidArgument, "M = 0");
  expect_fail(5, dx, "", Status::kInvalidArgument, "input buffer holds");
  cl::Buffer tiny = c.alloc(64);
  expect_fail(1, tiny, "", Status::kInvalidArgument, "input buffer holds");
  expect_fail(4, dx, "bogus", Status::kInvalidArgument, "unknown variant");
  if (!c.features().nv_mma_f16) expect_fail(4, dx, "nv_mma_tiled", Status::kNotSupported, "nv_mma_tiled");  // probe absent here
}

// nv_wgmma's markers: the register-A wgmma in both shapes (the n256 one has operands past 99) with
// the type the patch was made for, and the register hand-over around it.
TEST(W4A16Wgmma, PatchExpandsTheRegisterAMarkers) {
  auto regs = [](int n, int base) {
    std::string r;
    for (int i = 0; i < n; ++i) r += " %f" + std::to_string(base + i);
    return r;
  };
  const std::string head = ".version 9.0\n.target sm_90\n.address_size 64\n.entry k()\n{\n"
                           "\t// CLQ_WG_SMEM_BASE %r5\n\t// CLQ_WG_REGS_INC_224\n\t// CLQ_WG_PROXY\n\t// CLQ_WG_FENCE\n";
  const std::string ptx = head + "\t// CLQ_WG_MMA_RS_N256" + regs(128, 1000) + " %r1 %r2 %r3 %r4 %rd7 %r9\n" +
                          "\t// CLQ_WG_COMMIT\n\t// CLQ_WG_WAIT1" + regs(160, 1000) + "\n\t// CLQ_WG_WAIT0\n\tret;\n}\n";
  const std::string out = apply_ptx_patch(ptx, wgmma_patch(5 * 37888 + 1024, WgmmaOperands::kF16Rs));
  EXPECT_NE(out.find("m64n256k16.f32.f16.f16 {%f1000, %f1001, "), std::string::npos) << out;
  EXPECT_NE(out.find(", %f1127}, {%r1, %r2, %r3, %r4}, %rd7, %clq_p, 1, 1, 0;"), std::string::npos) << out;
  EXPECT_NE(out.find("setp.ne.b32 %clq_p, %r9, 0;"), std::string::npos) << out;
  EXPECT_NE(out.find("setmaxnreg.inc.sync.aligned.u32 224;"), std::string::npos) << out;
  EXPECT_NE(out.find("wgmma.wait_group.sync.aligned 1;"), std::string::npos) << out;
  EXPECT_EQ(out.find("CLQ_"), std::string::npos);
  const std::string bf = apply_ptx_patch(ptx, wgmma_patch(5 * 37888 + 1024, WgmmaOperands::kBf16Rs));
  EXPECT_NE(bf.find("m64n256k16.f32.bf16.bf16 {"), std::string::npos);
  EXPECT_NE(wgmma_patch(1024, WgmmaOperands::kF16Rs).key(), wgmma_patch(1024, WgmmaOperands::kBf16Rs).key());
}
