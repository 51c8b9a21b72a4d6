// safetensors: round trips, sharded checkpoints, and each malformed file rejected with its own
// error (SPEC via issue 3: header length, size limit, JSON, dtypes, offsets, byte sizes).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "host/io/safetensors.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

namespace {
std::string image(const std::string& header, size_t data_bytes, uint64_t header_len_override = 0) {
  std::string s(8, '\0');
  uint64_t n = header_len_override ? header_len_override : header.size();
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  s += header;
  s += std::string(data_bytes, '\x01');
  return s;
}

void expect_bad(const std::string& img, const std::string& needle) {
  std::vector<StTensor> t;
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "test.safetensors", &t, nullptr);
    ADD_FAILURE() << "accepted a malformed file; expected: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kFormatError) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

const char* kOne = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
}  // namespace

TEST(Safetensors, MalformedFilesEachGetTheirOwnError) {
  expect_bad(std::string(5, '\0'), "shorter than the 8-byte header length");
  expect_bad(image(kOne, 16, 1000), "runs past the end of the file");
  expect_bad(image(kOne, 16, 100000001ull), "exceeds the 100 MB limit");
  expect_bad(image("{\"a\":", 0), "not valid JSON");
  expect_bad(image("[1,2]", 0), "not a JSON object");
  expect_bad(
      image(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "appears twice");
  expect_bad(image(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype 'Q4'");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "not a non-negative integer");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), "not a non-negative integer");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4), "not [begin, end]");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "begin > end");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}})", 4), "past the data section");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "need 12");
  expect_bad(
      image(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          12),
      "gap in the data section");
  expect_bad(
      image(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "overlaps");
  expect_bad(image(kOne, 20), "trailing bytes");
  expect_bad(image(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 16),
             "not a string");
  expect_bad(image(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8), "overflows");
  expect_bad(image(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "no dtype");
}

TEST(Safetensors, AcceptsAValidImageAndEmptyTensors) {
  std::vector<StTensor> t;
  std::string ok = image(
      R"({"z":{"dtype":"I32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})",
      4);
  parse_safetensors(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "ok", &t, nullptr);
  EXPECT_EQ(t.size(), 2u);
}

TEST(Safetensors, WriteReadRoundTripAndAtomicity) {
  std::string dir = test::temp_dir("st");
  SafetensorsWriter w;
  std::vector<uint16_t> h = {1, 2, 3, 4, 5, 6};
  std::vector<int32_t> q = {-1, 7};
  std::vector<uint8_t> f8 = {0x38, 0x7E, 0x01};
  w.add("x.half", StDType::kF16, {2, 3}, h.data(), h.size() * 2);
  w.add("x.q", StDType::kI32, {2}, q.data(), 8);
  w.add("x.f8", StDType::kF8E4M3, {3}, f8.data(), 3);
  w.set_metadata("format", "pt");
  w.write(dir + "/m.safetensors");
  auto f = SafetensorsFile::open(dir + "/m.safetensors");
  ASSERT_NE(f->find("x.half"), nullptr);
  EXPECT_EQ(f->find("x.half")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(0, std::memcmp(f->find("x.q")->data, q.data(), 8));
  EXPECT_EQ(f->find("x.f8")->dtype, StDType::kF8E4M3);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_THROW(w.add("x.q", StDType::kI32, {2}, q.data(), 8), Error);  // duplicate name
  EXPECT_THROW(w.add("y", StDType::kI32, {3}, q.data(), 8), Error);    // size mismatch
  // A write into a folder that does not exist fails cleanly and leaves nothing behind.
  EXPECT_THROW(w.write(dir + "/missing/out.safetensors"), Error);
  try {
    SafetensorsFile::open(dir + "/nope.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kIoError);
  }
}

TEST(Safetensors, ShardedCheckpointThroughIndex) {
  std::string dir = test::temp_dir("shard");
  std::vector<float> a = {1, 2}, b = {3, 4, 5};
  SafetensorsWriter w1, w2;
  w1.add("layer.a", StDType::kF32, {2}, a.data(), 8);
  w2.add("layer.b", StDType::kF32, {3}, b.data(), 12);
  w1.write(dir + "/model-00001-of-00002.safetensors");
  w2.write(dir + "/model-00002-of-00002.safetensors");
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"layer.a":"model-00001-of-00002.safetensors","layer.b":"model-00002-of-00002.safetensors"}})";
  Checkpoint ck = Checkpoint::open(dir);
  EXPECT_EQ(ck.require("layer.b").shape[0], 3);
  EXPECT_EQ(ck.names_with_prefix("layer.").size(), 2u);
  EXPECT_THROW(ck.require("layer.c"), Error);
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map":{"layer.a":"model-00002-of-00002.safetensors"}})";
  try {
    Checkpoint::open(dir + "/model.safetensors.index.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not hold it"), std::string::npos) << e.what();
  }
}

// Mutation fuzzing of the parser: every mutated image must parse cleanly or throw FormatError,
// never crash, read outside the image, or throw anything else. Seeded; 20000 cases.
TEST(Safetensors, FuzzedImagesFailCleanly) {
  SafetensorsWriter w;
  std::vector<float> a(12, 1.5f);
  std::vector<uint16_t> b(7, 0x3C00);
  w.add("a", StDType::kF32, {3, 4}, a.data(), a.size() * 4);
  w.add("b.weight", StDType::kBF16, {7}, b.data(), b.size() * 2);
  w.set_metadata("format", "pt");
  std::string dir = test::temp_dir("fuzz");
  w.write(dir + "/m.safetensors");
  std::ifstream in(dir + "/m.safetensors", std::ios::binary);
  std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937_64 rng(test::seed());
  size_t accepted = 0, rejected = 0;
  for (int it = 0; it < 20000; ++it) {
    std::string img = good;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 6) {
        case 0: img[rng() % img.size()] = char(rng()); break;                     // random byte
        case 1: img.resize(rng() % (img.size() + 1)); break;                      // truncate
        case 2: img.insert(rng() % (img.size() + 1), 1, char(rng())); break;      // insert
        case 3: if (img.size() > 8) img[8 + rng() % (img.size() - 8)] = "{}[]:,\"0123456789"[rng() % 17]; break;
        case 4: for (int i = 0; i < 8 && i < int(img.size()); ++i) img[size_t(i)] = char(rng()); break;  // header length
        default: img += std::string(rng() % 16, char(rng())); break;             // trailing bytes
      }
      if (img.empty()) break;
    }
    std::vector<StTensor> t;
    try {
      parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "fuzz", &t, nullptr);
      ++accepted;
      for (auto& x : t) {  // an accepted image's tensors lie inside it
        ASSERT_GE(x.data, reinterpret_cast<const uint8_t*>(img.data()));
        ASSERT_LE(x.data + x.nbytes, reinterpret_cast<const uint8_t*>(img.data()) + img.size());
      }
    } catch (const Error& e) {
      ASSERT_EQ(e.status(), Status::kFormatError) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 10000u);  // the mutations do break most images
  EXPECT_EQ(accepted + rejected, 20000u);
}
