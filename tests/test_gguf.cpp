// GGUF: the reader's rules (every one with a file that breaks it, every truncation of a good
// file), the loader's, and gguf_gemm against the fp64 reference on every supported variant,
// block type, activation type and awkward shape, with poisoned outputs. The independent check
// (files written by gguf-py, its dequantize as the expected weights) is python/tests/test_gguf.py.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>

#include "host/caps/caps.h"
#include "host/formats/gguf.h"
#include "host/formats/loader.h"
#include "host/io/gguf.h"
#include "host/io/safetensors.h"
#include "host/ops/gguf/gguf_gemm.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

namespace {

const uint32_t kTypes[] = {2, 8, 12, 14};  // Q4_0, Q8_0, Q4_K, Q6_K

std::vector<uint8_t> good_image(uint32_t type = 2, int64_t N = 3, int64_t K = 64) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("general.alignment", 32);
  w.add_tensor("blk.0.ffn_down.weight", type, {K, N}, random_gguf_blocks(type, N, K, 1));
  w.add_tensor("blk.0.ffn_up.weight", 8, {32, 2}, random_gguf_blocks(8, 2, 32, 2));
  return w.image();
}

// The message of the FormatError parse_gguf raises for `img` ("" when it parses).
std::string parse_error(const std::vector<uint8_t>& img) {
  try {
    parse_gguf(img.data(), img.size(), "t.gguf");
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kFormatError) << e.what();
    return e.what();
  }
  return "";
}

// A little-endian image assembled by hand, for the rules the writer never breaks.
struct Img {
  std::vector<uint8_t> b;
  Img& raw(const std::string& s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Img& u(uint64_t v, int k) {
    for (int i = 0; i < k; ++i) b.push_back(uint8_t(v >> (8 * i)));
    return *this;
  }
  Img& str(const std::string& s) { return u(s.size(), 8).raw(s); }
  Img& head(uint64_t tensors, uint64_t kvs, uint32_t version = 3) { return raw("GGUF").u(version, 4).u(tensors, 8).u(kvs, 8); }
  Img& kv_u32(const std::string& k, uint32_t v) { return str(k).u(4, 4).u(v, 4); }
  Img& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t off) {
    str(name).u(ne.size(), 4);
    for (auto d : ne) u(d, 8);
    return u(type, 4).u(off, 8);
  }
  Img& pad(size_t align = 32) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  Img& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

}  // namespace

TEST(Gguf, GoodFileRoundTrips) {
  auto img = good_image();
  auto p = parse_gguf(img.data(), img.size(), "t.gguf");
  EXPECT_EQ(p.version, 3u);
  EXPECT_EQ(p.alignment, 32u);
  ASSERT_EQ(p.tensors.size(), 2u);
  EXPECT_EQ(p.tensors[0].name, "blk.0.ffn_down.weight");
  EXPECT_EQ(p.tensors[0].ne, (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(p.tensors[0].nbytes, size_t(2 * 3 * 18));
  EXPECT_EQ(p.metadata.at("general.architecture").s, "llama");
  // The writer's bytes come back unchanged.
  auto blocks = random_gguf_blocks(2, 3, 64, 1);
  EXPECT_EQ(std::memcmp(p.tensors[0].data, blocks.data(), blocks.size()), 0);
  EXPECT_EQ((p.tensors[1].data - img.data()) % 32, 0);
}

TEST(Gguf, EveryTruncationIsRefusedWithAMessage) {
  auto img = good_image();
  for (size_t n = 0; n < img.size(); ++n) {
    std::vector<uint8_t> cut(img.begin(), img.begin() + long(n));
    SCOPED_TRACE("first " + std::to_string(n) + " bytes");
    EXPECT_NE(parse_error(cut), "");
  }
}

TEST(Gguf, EveryRuleHasItsMessage) {
  struct Bad {
    const char* rule;
    std::function<Img()> make;
    const char* message;
  };
  const std::vector<Bad> cases = {
      {"magic", [] { return Img().raw("GGUX").u(3, 4).u(0, 8).u(0, 8); }, "magic 'GGUF'"},
      {"safetensors given", [] { Img i; i.u(2, 8).raw("{}"); return i; }, "this is a safetensors file"},
      {"version 1", [] { return Img().head(0, 0, 1); }, "version 1 is not supported"},
      {"version 4", [] { return Img().head(0, 0, 4); }, "version 4 is not supported"},
      {"huge kv count", [] { return Img().head(0, uint64_t(1) << 60); }, "metadata count"},
      {"huge tensor count", [] { return Img().head(uint64_t(1) << 60, 0); }, "tensor count"},
      {"key length past end", [] { return Img().head(0, 1).u(1000, 8).raw("abcdefghijklmnop"); }, "runs past the end"},
      {"empty key", [] { return Img().head(0, 1).str("").u(4, 4).u(1, 4); }, "is empty"},
      {"key not UTF-8", [] { return Img().head(0, 1).str("a\xff").u(4, 4).u(1, 4); }, "not valid UTF-8"},
      {"key with NUL", [] { return Img().head(0, 1).str(std::string("a\0b", 3)).u(4, 4).u(1, 4); }, "NUL"},
      {"duplicate key", [] { return Img().head(0, 2).kv_u32("a", 1).kv_u32("a", 2); }, "appears twice"},
      {"unknown value type", [] { return Img().head(0, 1).str("a").u(13, 4).u(0, 8); }, "unknown value type 13"},
      {"bad bool", [] { return Img().head(0, 1).str("a").u(7, 4).u(2, 1); }, "must be 0 or 1"},
      {"huge array", [] { return Img().head(0, 1).str("a").u(9, 4).u(4, 4).u(uint64_t(1) << 40, 8); }, "claims"},
      {"deep arrays",
       [] {
         Img i = Img().head(0, 1).str("a").u(9, 4);
         for (int d = 0; d < 10; ++d) i.u(9, 4).u(1, 8);  // array of arrays of ...
         return i.u(4, 4).u(0, 8);
       },
       "deeper than 8"},
      {"alignment not u32", [] { return Img().head(0, 1).str("general.alignment").u(10, 4).u(32, 8); }, "must be a u32"},
      {"alignment not a power of two", [] { return Img().head(0, 1).kv_u32("general.alignment", 24); }, "power of two"},
      {"alignment zero", [] { return Img().head(0, 1).kv_u32("general.alignment", 0); }, "power of two"},
      {"no dims", [] { return Img().head(1, 0).tensor("t", {}, 0, 0).pad().zeros(64); }, "has 0 dims"},
      {"five dims", [] { return Img().head(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad().zeros(64); }, "has 5 dims"},
      {"zero dim", [] { return Img().head(1, 0).tensor("t", {4, 0}, 0, 0).pad().zeros(64); }, "must be >= 1"},
      {"unknown type", [] { return Img().head(1, 0).tensor("t", {32}, 99, 0).pad().zeros(64); }, "unknown ggml type 99"},
      {"partial block", [] { return Img().head(1, 0).tensor("t", {48, 2}, 2, 0).pad().zeros(64); }, "not a multiple"},
      {"overflowing size",
       [] { return Img().head(1, 0).tensor("t", {uint64_t(1) << 62, uint64_t(1) << 62}, 0, 0).pad().zeros(64); },
       "overflows"},
      {"misaligned offset", [] { return Img().head(1, 0).tensor("t", {8}, 0, 4).pad().zeros(64); }, "not a multiple of the alignment"},
      {"past the end", [] { return Img().head(1, 0).tensor("t", {64}, 0, 0).pad().zeros(64); }, "runs past the end of the data"},
      {"duplicate tensor",
       [] { return Img().head(2, 0).tensor("t", {8}, 0, 0).tensor("t", {8}, 0, 32).pad().zeros(64); }, "appears twice"},
      {"overlap",
       [] { return Img().head(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad().zeros(96); }, "overlap"},
      {"empty tensor name", [] { return Img().head(1, 0).tensor("", {8}, 0, 0).pad().zeros(64); }, "empty name"},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.rule);
    const std::string msg = parse_error(c.make().b);
    EXPECT_NE(msg.find(c.message), std::string::npos) << msg;
  }
  // The near-misses parse: the smallest file, and a tensor that ends exactly at the end.
  EXPECT_EQ(parse_error(Img().head(0, 0).b), "");
  EXPECT_EQ(parse_error(Img().head(1, 0).tensor("t", {8}, 0, 0).pad().zeros(32).b), "");
}

TEST(Gguf, SafetensorsReaderNamesAGgufFile) {
  const std::string dir = test::temp_dir("gguf");
  const std::string path = dir + "/m.gguf";
  auto img = good_image();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(img.data()), long(img.size()));
  try {
    SafetensorsFile::open(path);
    FAIL() << "a GGUF file opened as safetensors";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kFormatError);
    EXPECT_NE(std::string(e.what()).find("this is a GGUF file"), std::string::npos) << e.what();
  }
}

TEST(GgufLoader, LinearLayerAndItsRules) {
  const std::string dir = test::temp_dir("ggufl");
  const std::string path = dir + "/model.gguf";
  GgufWriter w;
  w.add_tensor("blk.0.ffn_down.weight", 12, {512, 7}, random_gguf_blocks(12, 7, 512, 3));
  w.add_tensor("blk.0.attn_norm.weight", 0, {512}, std::vector<uint8_t>(2048, 0));
  w.add_tensor("blk.0.ffn_up.weight", 0, {64, 4}, std::vector<uint8_t>(64 * 4 * 4, 0));
  auto bad_scale = random_gguf_blocks(2, 2, 64, 4);
  bad_scale[18 * 3 + 0] = 0x00, bad_scale[18 * 3 + 1] = 0x7C;  // +Inf in the 4th block's d
  w.add_tensor("blk.0.ffn_gate.weight", 2, {64, 2}, bad_scale);
  w.write(path);

  LinearLayer l = load_linear(path, "blk.0.ffn_down");
  ASSERT_TRUE(l.is_gguf());
  EXPECT_EQ(l.K(), 512);
  EXPECT_EQ(l.N(), 7);
  EXPECT_EQ(l.describe(), "gguf Q4_K");

  auto refused = [&](const std::string& prefix, LoadOptions o, Status st, const std::string& part) {
    SCOPED_TRACE(prefix);
    try {
      load_linear(path, prefix, o);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), st) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused("blk.0.ffn_nope", {}, Status::kFormatError, "no tensor 'blk.0.ffn_nope.weight'");
  refused("blk.0.attn_norm", {}, Status::kNotSupported, "is F32");
  refused("blk.0.ffn_up", {}, Status::kNotSupported, "Q4_0, Q8_0, Q4_K, Q6_K");
  refused("blk.0.ffn_gate", {}, Status::kFormatError, "row 1, column 32 has a non-finite fp16 scale (0x7C00)");
  LoadOptions fmt;
  fmt.format = "gptq";
  refused("blk.0.ffn_down", fmt, Status::kInvalidArgument, "the checkpoint is a GGUF file");
  LoadOptions gs;
  gs.group_size = 32;
  refused("blk.0.ffn_down", gs, Status::kInvalidArgument, "does not apply to a GGUF file");
  try {
    load_moe(path, "blk.0");
    ADD_FAILURE() << "a GGUF MoE was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kNotSupported);
  }
}

namespace {
void run_gguf_case(uint32_t type, int64_t M, int64_t N, int64_t K, DType dt, uint64_t seed) {
  SCOPED_TRACE(std::string(ggml_type_name(type)) + " M" + std::to_string(M) + " N" + std::to_string(N) + " K" +
               std::to_string(K) + " " + dtype_name(dt) + " seed " + std::to_string(seed));
  auto& c = test::ctx();
  GgufTensor t;
  t.name = "w";
  t.type = type;
  t.ne = {K, N};
  auto blocks = random_gguf_blocks(type, N, K, seed);
  t.data = blocks.data();
  t.nbytes = blocks.size();
  const GgufLinear l = validate_gguf_linear(t);
  auto x = random_activations(M, K, dt, seed ^ 0x77);
  auto ref = gemm_reference(x.data(), dt, M, K, dequantize_gguf(l), N);
  const size_t yb = size_t(M * N) * dtype_size(dt);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(yb);
  c.write(dx, x.data(), x.size());
  GgufGemm op(c, l);
  // Every gguf_gemm variant on the affine layout; Q4_0 also through every W4A16 variant.
  std::vector<std::pair<std::string, bool>> runs;  // variant, native
  auto variants = supported_variants("gguf_gemm", c.features());
  ASSERT_EQ(variants.size(), 2u);
  for (auto* v : variants) runs.push_back({v->variant, true});
  runs.push_back({"gemv+splits", true});  // split-K with a reduce pass, as GPUs run it
  EXPECT_EQ(op.via_w4a16({}), type == 2);
  if (op.via_w4a16({}))
    for (auto* v : supported_variants("w4a16_gemm", c.features())) runs.push_back({v->variant, false});
  for (auto& [variant, native] : runs) {
    SCOPED_TRACE(variant + (native ? " (gguf_gemm)" : " (w4a16_gemm)"));
    c.fill_u32(dy, 0xFFFFFFFFu, yb);  // NaN in every output type: an unwritten element fails
    GgufRunOptions o;
    o.variant = variant == "gemv+splits" ? "gemv" : variant;
    o.splits = variant == "gemv+splits" ? 3 : 0;
    o.native = native;
    OpEvents ev = op.run(dx, dt, dy, dt, M, o);
    ASSERT_NE(ev.row, nullptr);
    EXPECT_EQ(ev.row->variant, o.variant);
    EXPECT_STREQ(ev.row->op, native || type != 2 ? "gguf_gemm" : "w4a16_gemm");
    std::vector<uint8_t> y(yb);
    c.read(dy, y.data(), yb);
    ErrorStats e = compare_output(y.data(), dt, ref);
    EXPECT_EQ(e.nan_count, 0u);
    EXPECT_LT(e.rel_mean(), GgufProblem::kTolerance) << "max abs err " << e.max_abs_err;
    EXPECT_GT(e.mean_abs_ref, 0.0);
  }
}
}  // namespace

TEST(GgufGemm, EveryTypeVariantAndDtype) {
  const DType dts[] = {DType::kF16, DType::kBF16, DType::kF32};
  const int64_t Ms[] = {1, 3, 17, 40};
  int i = 0;
  for (uint32_t type : kTypes) {
    const int64_t block = ggml_type_info(type)->block;
    for (int64_t M : Ms) {
      // N not a multiple of any tile; K a few blocks, odd where the block allows.
      const int64_t N = 37 + 8 * (i % 3), K = block == 32 ? 32 * (5 + i % 4) : 256 * (1 + i % 3);
      run_gguf_case(type, M, N, K, dts[i % 3], test::seed() + uint64_t(i));
      ++i;
    }
  }
}

TEST(GgufGemm, RefusesBadCallsBeforeWork) {
  auto& c = test::ctx();
  GgufTensor t;
  t.name = "w";
  t.type = 8;
  t.ne = {64, 5};
  auto blocks = random_gguf_blocks(8, 5, 64, 9);
  t.data = blocks.data();
  t.nbytes = blocks.size();
  GgufGemm op(c, validate_gguf_linear(t));
  cl::Buffer dx = c.alloc(64 * 2), dy = c.alloc(5 * 2);
  EXPECT_THROW(op.run(dx, DType::kF16, dy, DType::kF16, 2), Error);  // x holds one row, not two
  EXPECT_THROW(op.run(dx, DType::kF16, dy, DType::kF16, 0), Error);
  GgufRunOptions o;
  o.variant = "nv_mma";
  EXPECT_THROW(op.run(dx, DType::kF16, dy, DType::kF16, 1, o), Error);
  // A tensor whose bytes do not match its dims, and a 3-D one.
  GgufTensor short_t = t;
  short_t.nbytes -= 1;
  EXPECT_THROW(validate_gguf_linear(short_t), Error);
  GgufTensor three = t;
  three.ne = {64, 5, 1};
  EXPECT_THROW(validate_gguf_linear(three), Error);
}
