// safetensors: round trips, sharded checkpoints, and each malformed file rejected with its own
// error (SPEC via issue 3: header length, size limit, JSON, dtypes, offsets, byte sizes).
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
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

// CPU seconds of this thread: the time limits below are about the parser's complexity, and the
// wall clock on a shared 2-core machine also counts other people's builds.
double thread_cpu_s() {
  timespec ts;
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
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

// ---- hostile headers (issue 16): the reference's strictness, linear time, bounded nesting ----

TEST(Safetensors, RejectsWhatTheReferenceRejects) {
  const std::string one = kOne;
  expect_bad(image("\xEF\xBB\xBF" + one, 16), "byte-order mark");
  expect_bad(image(one + std::string("\0junk", 5), 16), "bytes after the JSON object");
  expect_bad(image(one + std::string(3, '\0'), 16), "bytes after the JSON object");
  expect_bad(image(one + "{}", 16), "bytes after the JSON object");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[2,2],"shape":[4],"data_offsets":[0,16]}})", 16),
             "has field 'shape' twice");
  expect_bad(image(R"({"a":{"dtype":"F16","dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 16),
             "has field 'dtype' twice");
  expect_bad(image(R"({"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
             "appears twice");
  expect_bad(image("{\"a\xC0\xAF\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "not valid UTF-8");
  expect_bad(image("{\"\xED\xA0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "not valid UTF-8");
  expect_bad(image(R"({"\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4), "surrogate");
  expect_bad(image(" " + one, 16), "must start with '{'");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}})", 4), "not a non-negative integer");
  expect_bad(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}})", 4),
             "does not fit 64 bits");
  // Empty, but dims whose product overflows would poison any later shape arithmetic.
  expect_bad(image(R"({"a":{"dtype":"I32","shape":[4611686018427387904,4611686018427387904,0],"data_offsets":[0,0]}})",
                   0),
             "overflows");
  // Escapes decode; unknown fields are skipped as the reference does; spaces may pad.
  std::vector<StTensor> t;
  std::map<std::string, std::string> meta;
  std::string ok = image(
      R"({"__metadata__":{"n\u00e9":"\ud83d\ude00"},"a\"b":{"dtype":"F32","x":[{"y":null}],"shape":[1],"data_offsets":[0,4]}}   )",
      4);
  parse_safetensors(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "ok", &t, &meta);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].name, "a\"b");
  EXPECT_EQ(meta.at("n\xC3\xA9"), "\xF0\x9F\x98\x80");
}

TEST(Safetensors, DeepNestingIsRefusedWithoutRecursion) {
  for (int depth : {65, 1000, 100000}) {
    const std::string deep = std::string(size_t(depth), '[') + "1" + std::string(size_t(depth), ']');
    expect_bad(image(R"({"a":{"dtype":"F32","x":)" + deep + R"(,"shape":[1],"data_offsets":[0,4]}})", 4),
               "nests deeper than 64");
    expect_bad(image(R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})", 4),
               "is an array, not a non-negative integer");
  }
}

// An 80k-entry header (4.5 MB) once took more than 300 s: the duplicate check was quadratic.
TEST(Safetensors, LargeHeadersParseInLinearTime) {
  const int n = 80000;
  std::string h = "{";
  for (int i = 0; i < n; ++i)
    h += (i ? "," : "") + std::string("\"model.layers.") + std::to_string(i) +
         ".weight\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" + std::to_string(i) + "," +
         std::to_string(i + 1) + "]}";
  const std::string good = image(h + "}", size_t(n));
  const std::string dup = image(h + ",\"model.layers.7.weight\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                                size_t(n));
  const double t0 = thread_cpu_s();
  std::vector<StTensor> t;
  parse_safetensors(reinterpret_cast<const uint8_t*>(good.data()), good.size(), "big", &t, nullptr);
  EXPECT_EQ(t.size(), size_t(n));
  expect_bad(dup, "'model.layers.7.weight' appears twice");
  const double s = thread_cpu_s() - t0;
#if defined(__SANITIZE_ADDRESS__)
  const double limit = 10.0;  // AddressSanitizer builds run several times slower
#else
  const double limit = 1.0;
#endif
  EXPECT_LT(s, limit) << "two 80k-entry headers took " << s << " CPU s";
}

// Every file of tests/corpus/safetensors: bad-* rejected with FormatError within a second through
// the real open path, good-* accepted. The corpus also seeds the fuzz target.
TEST(Safetensors, CorpusFilesAreRejectedQuickly) {
  const std::string dir = std::string(CLQ_TEST_CORPUS_DIR) + "/safetensors";
  DIR* d = ::opendir(dir.c_str());
  ASSERT_NE(d, nullptr) << dir;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.push_back(e->d_name);
  ::closedir(d);
  int bad_files = 0, good_files = 0;
  for (auto& n : names) {
    const bool is_bad = n.rfind("bad-", 0) == 0, is_good = n.rfind("good-", 0) == 0;
    if (!is_bad && !is_good) continue;
    const double c0 = thread_cpu_s();
    auto t0 = std::chrono::steady_clock::now();
    try {
      auto f = SafetensorsFile::open(dir + "/" + n);
      EXPECT_TRUE(is_good) << n << " was accepted";
      ++good_files;
    } catch (const Error& e) {
      EXPECT_TRUE(is_bad) << n << ": " << e.what();
      EXPECT_EQ(e.status(), Status::kFormatError) << n << ": " << e.what();
      EXPECT_LT(std::strlen(e.what()), 600u) << n << ": the message prints a whole value";
      ++bad_files;
    }
    const double cpu = thread_cpu_s() - c0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(cpu, 1.0) << n << " took " << cpu << " CPU s";
    EXPECT_LT(wall, 10.0) << n << " took " << wall << " s (blocked?)";
  }
  EXPECT_GE(bad_files, 40);
  EXPECT_GE(good_files, 5);
}

// ---- paths (issue 16): special files never block, outputs never replace inputs or links ----

TEST(Safetensors, SpecialFilesAreRefusedWithoutBlocking) {
  const std::string dir = test::temp_dir("fifo");
  const std::string fifo = dir + "/w.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto t0 = std::chrono::steady_clock::now();
  for (const std::string& p : {fifo, dir, std::string("/dev/zero")}) {
    try {
      SafetensorsFile::open(p);
      ADD_FAILURE() << p << " was opened";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kIoError);
      EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
    }
  }
  // A FIFO as a shard of an index, and as the index itself.
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"a":"w.safetensors"}})";
  EXPECT_THROW(Checkpoint::open(dir), Error);
  ::unlink((dir + "/model.safetensors.index.json").c_str());
  ASSERT_EQ(::mkfifo((dir + "/model.safetensors.index.json").c_str(), 0600), 0);
  EXPECT_THROW(Checkpoint::open(dir), Error);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0) << "blocked?";
}

TEST(Safetensors, OutputsNeverReplaceInputsLinksOrDevices) {
  const std::string dir = test::temp_dir("out");
  std::vector<float> a = {1, 2, 3, 4};
  SafetensorsWriter w;
  w.add("x", StDType::kF32, {4}, a.data(), 16);
  const std::string in = dir + "/in.safetensors";
  w.write(in);
  auto f = SafetensorsFile::open(in);
  const std::vector<FileId> inputs{f->id()};
  auto expect_refused = [&](const std::string& out, const std::string& needle) {
    try {
      w.write(out, inputs);
      ADD_FAILURE() << out << " was written";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_refused(in, "same file as an input");
  ASSERT_EQ(::link(in.c_str(), (dir + "/hard").c_str()), 0);
  expect_refused(dir + "/hard", "same file as an input");
  ASSERT_EQ(::symlink("elsewhere", (dir + "/link").c_str()), 0);
  expect_refused(dir + "/link", "symbolic link");
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);
  expect_refused(dir + "/fifo", "FIFO");
  expect_refused("/dev/null", "character device");
  expect_refused(dir, "folder");
  // The input is intact, and no temporary file was left behind.
  EXPECT_EQ(SafetensorsFile::open(in)->find("x")->nbytes, 16u);
  // A 250-byte name: the temporary name must fit the 255-byte limit too.
  const std::string long_name = dir + "/" + std::string(238, 'o') + ".safetensors";
  w.write(long_name, inputs);
  EXPECT_EQ(SafetensorsFile::open(long_name)->tensors().size(), 1u);
  int entries = 0;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") ++entries;
    EXPECT_EQ(n.find(".clq-"), std::string::npos) << "temporary left behind: " << n;
  }
  ::closedir(d);
  EXPECT_EQ(entries, 5);  // in, hard, link, fifo, the long name
}
