// clquant quantize's sharded output: a small dense model forced into several shards by a tiny
// max_shard_size gives the same tensors, bit for bit, as the single-file output, laid out as
// transformers' save_pretrained lays them out (model-0000i-of-0000N.safetensors and an index with
// metadata.total_size and weight_map) and loading back through clquant's own readers; --force
// replaces an earlier set of another shard count without leftovers; bad sizes and failures leave
// nothing behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <cstring>

#include "host/formats/quantize.h"
#include "host/model/quantize.h"
#include "host/model/verify.h"
#include "host/numeric.h"
#include "host/reference/quantize_reference.h"
#include "runtime/status.h"
#include "test_util.h"

using namespace clq;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path = test::temp_dir("shards");
  ~TempDir() { fs::remove_all(path); }
};

std::vector<uint8_t> random_bf16(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<uint8_t> b(size_t(n) * 2);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (int64_t i = 0; i < n; ++i) store_from_f32(b.data(), size_t(i), DType::kBF16, nd(rng));
  return b;
}

// A dense model of seven tensors (four linears to quantize, an embedding, a norm and a head that
// are copied), with a config.json. `huge_last`: the last linear in name order has one weight of
// 1e6, so int4 symmetric g32 refuses it after its device pass (scale above fp16's range).
void write_dense_model(const std::string& dir, uint64_t seed, bool huge_last = false) {
  SafetensorsWriter w;
  std::vector<std::vector<uint8_t>> keep;
  keep.reserve(8);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    keep.push_back(random_bf16(n, seed + keep.size()));
    if (huge_last && name == "model.layers.1.self_attn.q_proj.weight") store_from_f32(keep.back().data(), 77, DType::kBF16, 1e6f);
    w.add(name, StDType::kBF16, shape, keep.back().data(), keep.back().size());
  };
  add("model.embed_tokens.weight", {64, 128});
  add("model.layers.0.mlp.down_proj.weight", {64, 256});
  add("model.layers.0.self_attn.q_proj.weight", {128, 128});
  add("model.layers.1.mlp.down_proj.weight", {64, 256});
  add("model.layers.1.self_attn.q_proj.weight", {128, 128});
  add("model.norm.weight", {128});
  add("lm_head.weight", {64, 128});
  w.set_metadata("format", "pt");
  w.write(dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << R"({"model_type": "llama", "hidden_size": 128})" << "\n";
}

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> v;
  for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

QuantizeReport run(const std::string& in, const std::string& out, QuantSpec spec, uint64_t max, bool force = false) {
  QuantizeCheckpointOptions o;
  o.input = in;
  o.output = out;
  o.spec = spec;
  o.max_shard_size = max;
  o.force = force;
  return quantize_checkpoint(test::ctx(), o);
}

std::string shard(size_t i, size_t n) {
  char b[64];
  std::snprintf(b, sizeof b, "model-%05zu-of-%05zu.safetensors", i, n);
  return b;
}

// The sharded folder `dir` against the single-file folder `single`: names, index, bytes.
void expect_same_as_single(const std::string& dir, const std::string& single, uint64_t max, const std::string& what) {
  auto one = SafetensorsFile::open(single + "/model.safetensors");
  const nlohmann::json index = nlohmann::json::parse(slurp(dir + "/model.safetensors.index.json"));
  ASSERT_TRUE(index.contains("metadata") && index.contains("weight_map")) << what;
  const auto& wm = index["weight_map"];
  std::set<std::string> files;
  for (auto it = wm.begin(); it != wm.end(); ++it) files.insert(it.value().get<std::string>());
  const size_t n = files.size();
  ASSERT_GT(n, 2u) << what << ": the tiny limit must give several shards";
  std::vector<std::string> want = {"config.json", "model.safetensors.index.json"};
  for (size_t i = 1; i <= n; ++i) want.push_back(shard(i, n));
  std::sort(want.begin(), want.end());
  EXPECT_EQ(listing(dir), want) << what << ": exactly the shards, the index and config.json (no temporaries)";
  ASSERT_EQ(wm.size(), one->tensors().size()) << what;
  uint64_t total = 0;
  size_t seen = 0;
  for (size_t i = 1; i <= n; ++i) {
    auto f = SafetensorsFile::open(dir + "/" + shard(i, n));
    EXPECT_EQ(f->metadata().at("format"), "pt") << what;
    uint64_t bytes = 0;
    for (auto& t : f->tensors()) {
      ASSERT_TRUE(wm.contains(t.name)) << what << ": " << t.name << " in a shard but not in the index";
      EXPECT_EQ(wm[t.name].get<std::string>(), shard(i, n)) << what << ": " << t.name;
      const StTensor* s = one->find(t.name);
      ASSERT_NE(s, nullptr) << what << ": " << t.name;
      EXPECT_EQ(t.dtype, s->dtype) << t.name;
      EXPECT_EQ(t.shape, s->shape) << t.name;
      ASSERT_EQ(t.nbytes, s->nbytes) << t.name;
      EXPECT_EQ(std::memcmp(t.data, s->data, t.nbytes), 0) << what << ": " << t.name << " differs from the single file";
      bytes += t.nbytes;
      ++seen;
    }
    ASSERT_FALSE(f->tensors().empty()) << what << ": empty shard " << i;
    EXPECT_TRUE(bytes <= max || f->tensors().size() == 1)
        << what << ": shard " << i << " holds " << bytes << " bytes over " << max << " in " << f->tensors().size() << " tensors";
    total += bytes;
  }
  EXPECT_EQ(seen, one->tensors().size()) << what;
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total) << what;
  EXPECT_EQ(slurp(dir + "/config.json"), slurp(single + "/config.json")) << what;
}

}  // namespace

TEST(QuantizeShards, LayoutIsWhatQuantizedTensorsWrites) {
  for (QuantSpec spec : {QuantSpec{QuantMethod::kInt4, 128, true}, QuantSpec{QuantMethod::kInt4, 64, false},
                         QuantSpec{QuantMethod::kInt8, -1, false}, QuantSpec{QuantMethod::kInt8, 32, true},
                         QuantSpec{QuantMethod::kFp8Block, 128, true}})
    for (auto [N, K] : {std::pair<int64_t, int64_t>{64, 256}, {136, 384}, {8, 128}}) {
      auto bytes = random_bf16(N * K, test::seed() + uint64_t(N + K));
      const DenseWeight w{"P.weight", DType::kBF16, N, K, bytes.data()};
      const QuantizedTensors t = quantized_tensors(quantize_weight_host(w, spec), "P");
      const std::vector<StTensor> plan = quantized_layout("P", N, K, spec);
      ASSERT_EQ(plan.size(), t.tensors.size()) << quant_spec_text(spec);
      for (size_t i = 0; i < plan.size(); ++i) {
        EXPECT_EQ(plan[i].name, t.tensors[i].name);
        EXPECT_EQ(plan[i].dtype, t.tensors[i].dtype) << plan[i].name;
        EXPECT_EQ(plan[i].shape, t.tensors[i].shape) << plan[i].name;
        EXPECT_EQ(plan[i].nbytes, t.tensors[i].nbytes) << plan[i].name;
      }
    }
}

TEST(QuantizeShards, ShardedOutputHasTheSingleFilesBits) {
  TempDir d;
  const std::string in = d.path + "/dense";
  fs::create_directory(in);
  write_dense_model(in, test::seed());
  const uint64_t max = 6000;  // a few KB: every quantized layer's packed weights nearly fill a shard
  int i = 0;
  for (QuantSpec spec : {QuantSpec{QuantMethod::kInt4, 128, true}, QuantSpec{QuantMethod::kInt4, 64, false},
                         QuantSpec{QuantMethod::kInt8, -1, true}, QuantSpec{QuantMethod::kFp8Block, 128, true}}) {
    const std::string what = quant_spec_text(spec), single = d.path + "/one" + std::to_string(i),
                      sharded = d.path + "/many" + std::to_string(i);
    ++i;
    const QuantizeReport a = run(in, single, spec, QuantizeCheckpointOptions::kDefaultMaxShardSize);
    EXPECT_EQ(listing(single), (std::vector<std::string>{"config.json", "model.safetensors"})) << what;
    EXPECT_EQ(a.shards, std::vector<std::string>{"model.safetensors"});
    EXPECT_EQ(a.weights_path, single + "/model.safetensors");
    const QuantizeReport b = run(in, sharded, spec, max);
    EXPECT_EQ(b.weights_path, sharded + "/model.safetensors.index.json");
    EXPECT_EQ(b.total_size, a.total_size) << what;
    EXPECT_EQ(b.layers.size(), 4u);
    EXPECT_EQ(b.copied, 3);
    for (size_t l = 0; l < b.layers.size(); ++l) EXPECT_EQ(b.layers[l].error.err_sq, a.layers[l].error.err_sq) << what;
    expect_same_as_single(sharded, single, max, what);
    // Back through clquant's readers: the folder opens by its index and every layer passes.
    VerifyOptions vo;
    vo.seed = test::seed();
    const VerifyReport rep = verify_checkpoint(test::ctx(), sharded, vo);
    EXPECT_EQ(rep.layers.size(), 4u) << what;
    for (auto& r : rep.layers) EXPECT_TRUE(r.ok) << what << " " << r.layer.prefix << ": " << r.error;
  }
  // A shard size of 1 byte: every tensor larger than the limit stands alone in its shard.
  const QuantizeReport r = run(in, d.path + "/each", {QuantMethod::kInt4, 128, true}, 1);
  EXPECT_EQ(r.shards.size(), size_t(3 + 4 * 3)) << "3 copied + 4 layers x (packed, scale, shape)";
  for (size_t s = 0; s < r.shards.size(); ++s) EXPECT_EQ(r.shards[s], shard(s + 1, r.shards.size()));
  EXPECT_EQ(Checkpoint::open(d.path + "/each").names_with_prefix("").size(), r.shards.size());
}

TEST(QuantizeShards, ShardedInputToShardedOutput) {
  TempDir d;
  const std::string in = d.path + "/dense";
  fs::create_directory(in);
  write_dense_model(in, test::seed() + 5);
  const QuantSpec spec{QuantMethod::kInt8, 128, false};
  run(in, d.path + "/one", spec, QuantizeCheckpointOptions::kDefaultMaxShardSize);
  // The dense input split over two shards and an index, as a downloaded model comes.
  const std::string sh = d.path + "/dense-sharded";
  fs::create_directory(sh);
  auto src = SafetensorsFile::open(in + "/model.safetensors");
  nlohmann::json wm = nlohmann::json::object();
  for (int s = 0; s < 2; ++s) {
    SafetensorsWriter w;
    const std::string name = shard(size_t(s + 1), 2);
    for (size_t t = size_t(s); t < src->tensors().size(); t += 2) {
      const StTensor& x = src->tensors()[t];
      w.add(x.name, x.dtype, x.shape, x.data, x.nbytes);
      wm[x.name] = name;
    }
    w.write(sh + "/" + name);
  }
  std::ofstream(sh + "/model.safetensors.index.json") << nlohmann::json{{"metadata", nlohmann::json::object()}, {"weight_map", wm}}.dump();
  fs::copy_file(in + "/config.json", sh + "/config.json");
  run(sh, d.path + "/many", spec, 5000);
  expect_same_as_single(d.path + "/many", d.path + "/one", 5000, "sharded input");
}

TEST(QuantizeShards, ForceReplacesAnEarlierSetWithoutLeftovers) {
  TempDir d;
  const std::string in = d.path + "/dense", out = d.path + "/out";
  fs::create_directory(in);
  write_dense_model(in, test::seed() + 9);
  const QuantSpec spec{QuantMethod::kInt4, 128, true};
  const QuantizeReport a = run(in, out, spec, 1);  // 15 shards
  fs::create_directory(out + "/notes");
  std::ofstream(out + "/README.md") << "kept\n";
  const QuantizeReport b = run(in, out, spec, 12000, true);
  ASSERT_LT(b.shards.size(), a.shards.size());
  ASSERT_GT(b.shards.size(), 1u);
  std::vector<std::string> want = {"README.md", "config.json", "model.safetensors.index.json", "notes"};
  for (auto& s : b.shards) want.push_back(s);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(listing(out), want) << "the 15-shard set is gone, other files stay";
  EXPECT_EQ(b.removed.size(), a.shards.size()) << "every old name differs (another count in each)";
  // The same files as a fresh run into a new folder.
  run(in, d.path + "/ref", spec, 12000);
  for (auto& f : b.shards) EXPECT_EQ(slurp(out + "/" + f), slurp(d.path + "/ref/" + f)) << f;
  for (const char* f : {"model.safetensors.index.json", "config.json"})
    EXPECT_EQ(slurp(out + "/" + f), slurp(d.path + "/ref/" + f)) << f;
  EXPECT_TRUE(verify_checkpoint(test::ctx(), out).ok());
}

TEST(QuantizeShards, ForceBetweenOneFileAndShards) {
  TempDir d;
  const std::string in = d.path + "/dense", out = d.path + "/out";
  fs::create_directory(in);
  write_dense_model(in, test::seed() + 11);
  const QuantSpec spec{QuantMethod::kFp8Block, 128, true};
  run(in, out, spec, 5000);
  const QuantizeReport one = run(in, out, spec, QuantizeCheckpointOptions::kDefaultMaxShardSize, true);
  EXPECT_EQ(listing(out), (std::vector<std::string>{"config.json", "model.safetensors"}))
      << "an index left beside model.safetensors would shadow it for clquant's loader";
  EXPECT_FALSE(one.removed.empty());
  const QuantizeReport many = run(in, out, spec, 5000, true);
  EXPECT_EQ(std::count(many.removed.begin(), many.removed.end(), "model.safetensors"), 1)
      << "a model.safetensors left beside an index would shadow it for transformers";
  for (auto& f : listing(out)) EXPECT_NE(f, "model.safetensors");
  EXPECT_TRUE(verify_checkpoint(test::ctx(), out).ok());
}

TEST(QuantizeShardsBadInput, SizesAreCheckedBeforeAnythingIsWritten) {
  EXPECT_EQ(parse_byte_size("5GB", "s"), 5000000000ull);
  EXPECT_EQ(parse_byte_size("5gb", "s"), 5000000000ull);
  EXPECT_EQ(parse_byte_size("2GiB", "s"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("500MB", "s"), 500000000ull);
  EXPECT_EQ(parse_byte_size("500MiB", "s"), 500ull << 20);
  EXPECT_EQ(parse_byte_size("4096", "s"), 4096ull);
  EXPECT_EQ(parse_byte_size("4096B", "s"), 4096ull);
  EXPECT_EQ(parse_byte_size("3KB", "s"), 3000ull);
  EXPECT_EQ(parse_byte_size("1TiB", "s"), 1ull << 40);
  EXPECT_EQ(parse_byte_size("18446744073709551615", "s"), UINT64_MAX);
  auto refused = [](const std::string& text, const std::string& needle) {
    try {
      parse_byte_size(text, "--max-shard-size");
      ADD_FAILURE() << "'" << text << "' accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--max-shard-size '" + text + "'"), std::string::npos) << e.what();
    }
  };
  refused("12XB", "unknown unit 'XB'");
  refused("0", "must be at least 1 byte");
  refused("0GB", "must be at least 1 byte");
  refused("-5", "is not a size: a whole number of bytes");
  refused("+5", "is not a size");
  refused("", "is not a size");
  refused("GB", "is not a size");
  refused("1.5GB", "unknown unit '.5GB'");
  refused("5 GB", "unknown unit ' GB'");
  refused("18446744073709551616", "larger than 2^64 - 1");
  // Without a name (the command line puts the option's own in front): the value leads.
  try {
    parse_byte_size("12XB", "");
    ADD_FAILURE() << "'12XB' accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("'12XB' has an unknown unit 'XB': a whole number", 0), 0u) << e.what();
  }
  refused("20000000000GB", "larger than 2^64 - 1");

  TempDir d;
  const std::string in = d.path + "/dense";
  fs::create_directory(in);
  write_dense_model(in, test::seed() + 13);
  try {
    run(in, d.path + "/out", {QuantMethod::kInt4, 128, true}, 0);
    ADD_FAILURE() << "max shard size 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max shard size 0 bytes"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(d.path + "/out"));
}

TEST(QuantizeShardsBadInput, ALayerRefusedLateLeavesNothingBehind) {
  TempDir d;
  const std::string in = d.path + "/dense";
  fs::create_directory(in);
  write_dense_model(in, test::seed() + 17, /*huge_last=*/true);
  const std::vector<std::string> before = listing(in);
  // Int4 symmetric g32: the last linear's scale 1e6 / 7 passes fp16's range, found after its
  // device pass, when the earlier shards are already on disk under temporary names.
  for (bool existing : {false, true}) {
    const std::string out = d.path + (existing ? "/existing" : "/new");
    if (existing) {
      fs::create_directory(out);
      std::ofstream(out + "/model.safetensors") << "old";
    }
    try {
      run(in, out, {QuantMethod::kInt4, 32, true}, 3000, existing);
      ADD_FAILURE() << "a scale above fp16's range was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.q_proj"), std::string::npos) << e.what();
    }
    if (existing) {
      EXPECT_EQ(listing(out), std::vector<std::string>{"model.safetensors"}) << "the old file stays, no temporaries";
      EXPECT_EQ(slurp(out + "/model.safetensors"), "old");
    } else {
      EXPECT_FALSE(fs::exists(out)) << "the folder the run made is gone with its temporaries";
    }
  }
  EXPECT_EQ(listing(in), before);
}
