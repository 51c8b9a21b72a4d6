// The C API (include/clquant/clquant.h): layers loaded from checkpoints on disk and run on host
// arrays and on caller-owned cl_mem, against the fp64 references; failures as status codes with
// a message, never an exception.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <filesystem>
#include <thread>
#include <fstream>

#include "clquant/clquant.h"
#include "host/formats/loader.h"
#include "host/ops/moe/fused_moe.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/formats/quantize.h"
#include "host/reference/fp8_reference.h"
#include "host/reference/quantize_reference.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "host/synth/synth_model.h"
#include "test_util.h"

using namespace clq;

extern "C" int clq_c_check_version(void);

namespace {

const std::string kP = "model.layers.0.mlp.down_proj";

struct TempDir {
  std::string path = test::temp_dir("capi");
  ~TempDir() { std::filesystem::remove_all(path); }
};

struct Ctx {
  clq_context* c = nullptr;
  Ctx() { EXPECT_EQ(clq_context_open(nullptr, &c), CLQ_SUCCESS) << clq_last_error(); }
  ~Ctx() { clq_context_release(c); }
};

std::string last() {
  return clq_last_error();
}

// The layer under kP in dir/model.safetensors, with its quantize_config.json.
void write_layer(const std::string& dir, const W4Synth& syn) {
  SafetensorsWriter w;
  syn.add_to(w, kP);
  w.write(dir + "/model.safetensors");
  std::ofstream(dir + "/quantize_config.json") << syn.quantize_config_json();
}

}  // namespace

TEST(CApi, VersionStatusNamesAndCHeader) {
  EXPECT_STREQ(clq_version(), CLQ_VERSION_STRING);
  EXPECT_GT(std::strlen(clq_git_revision()), 0u);
  EXPECT_EQ(clq_c_check_version(), 1);
  EXPECT_STREQ(clq_status_name(CLQ_ERROR_INVALID_SHAPE), "CLQ_ERROR_INVALID_SHAPE");
  EXPECT_STREQ(clq_status_name(-5), "CL_OUT_OF_RESOURCES");
  EXPECT_EQ(int(CLQ_ERROR_FORMAT), int(Status::kFormatError));
  EXPECT_EQ(int(CLQ_ERROR_INTERNAL), int(Status::kInternal));
  size_t need = 0;
  ASSERT_EQ(clq_devices_json(nullptr, 0, &need), CLQ_SUCCESS) << last();
  std::string buf(need + 1, '\0');
  ASSERT_EQ(clq_devices_json(buf.data(), buf.size(), nullptr), CLQ_SUCCESS) << last();
  EXPECT_NE(buf.find("device"), std::string::npos);
  EXPECT_EQ(clq_devices_json(buf.data(), 3, nullptr), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("too small"), std::string::npos) << last();
}

TEST(CApi, GptqLayerOnHostArraysAndClMem) {
  TempDir d;
  W4SynthSpec s;
  s.format = W4Format::kGptq;
  s.K = 264;
  s.N = 72;
  s.group_size = 64;
  s.act_order = true;
  s.seed = test::seed();
  W4Synth syn(s);
  write_layer(d.path, syn);

  Ctx ctx;
  ASSERT_NE(ctx.c, nullptr);
  clq_linear* l = nullptr;
  ASSERT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), nullptr, 0, &l), CLQ_SUCCESS) << last();
  int64_t K = 0, N = 0;
  ASSERT_EQ(clq_linear_shape(l, &K, &N), CLQ_SUCCESS);
  EXPECT_EQ(K, 264);
  EXPECT_EQ(N, 72);
  EXPECT_NE(std::string(clq_linear_describe(l)).find("gptq"), std::string::npos);

  const int64_t M = 3;
  auto x = random_activations(M, K, DType::kF16, test::seed() + 1);
  auto ref = gemm_reference(x.data(), DType::kF16, M, K, dequantize_w4(syn.checkpoint()), N);
  // Host arrays in, fp32 out (poisoned first: a run that writes nothing fails).
  std::vector<float> y(size_t(M * N), std::nanf(""));
  ASSERT_EQ(clq_linear_run_host(l, x.data(), CLQ_F16, y.data(), CLQ_F32, M), CLQ_SUCCESS) << last();
  ErrorStats e = compare_output(y.data(), DType::kF32, ref);
  EXPECT_EQ(e.nan_count, 0u);
  EXPECT_LT(e.rel_mean(), W4A16Problem::kTolerance);
  EXPECT_GT(std::strlen(clq_linear_last_variant(l)), 0u);

  // Caller-owned cl_mem on the context's queue.
  cl_int err = 0;
  cl_context cc = clq_context_cl_context(ctx.c);
  cl_command_queue q = clq_context_cl_queue(ctx.c);
  cl_mem bx = clCreateBuffer(cc, CL_MEM_READ_ONLY, x.size(), nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  cl_mem by = clCreateBuffer(cc, CL_MEM_READ_WRITE, size_t(M * N) * 2, nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  std::vector<uint16_t> yh(size_t(M * N), 0x7E00);  // fp16 NaN poison
  ASSERT_EQ(clEnqueueWriteBuffer(q, bx, CL_TRUE, 0, x.size(), x.data(), 0, nullptr, nullptr), CL_SUCCESS);
  ASSERT_EQ(clEnqueueWriteBuffer(q, by, CL_TRUE, 0, yh.size() * 2, yh.data(), 0, nullptr, nullptr), CL_SUCCESS);
  ASSERT_EQ(clq_linear_run_cl(l, bx, CLQ_F16, by, CLQ_F16, M), CLQ_SUCCESS) << last();
  ASSERT_EQ(clq_context_finish(ctx.c), CLQ_SUCCESS);
  ASSERT_EQ(clEnqueueReadBuffer(q, by, CL_TRUE, 0, yh.size() * 2, yh.data(), 0, nullptr, nullptr), CL_SUCCESS);
  e = compare_output(yh.data(), DType::kF16, ref);
  EXPECT_EQ(e.nan_count, 0u);
  EXPECT_LT(e.rel_mean(), W4A16Problem::kTolerance);

  // A cl_mem too small for M rows is refused before anything is enqueued, naming the sizes.
  EXPECT_EQ(clq_linear_run_cl(l, bx, CLQ_F16, by, CLQ_F16, M + 1), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("input buffer holds"), std::string::npos) << last();
  EXPECT_EQ(clq_linear_run_cl(l, bx, CLQ_F16, nullptr, CLQ_F16, M), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(clq_linear_run_host(l, x.data(), clq_dtype(7), y.data(), CLQ_F32, M), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("xt = 7"), std::string::npos) << last();
  EXPECT_EQ(clq_linear_run_host(l, x.data(), CLQ_F16, y.data(), CLQ_F32, int64_t(1) << 40), CLQ_ERROR_INVALID_SHAPE);
  EXPECT_EQ(clq_linear_run_host(l, x.data(), CLQ_F16, y.data(), CLQ_F32, 0), CLQ_ERROR_INVALID_SHAPE);
  // A buffer from another OpenCL context.
  cl_device_id dev = nullptr;
  ASSERT_EQ(clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof(dev), &dev, nullptr), CL_SUCCESS);
  cl_context other = clCreateContext(nullptr, 1, &dev, nullptr, nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  cl_mem foreign = clCreateBuffer(other, CL_MEM_READ_WRITE, x.size(), nullptr, &err);
  EXPECT_EQ(clq_linear_run_cl(l, foreign, CLQ_F16, by, CLQ_F16, M), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("another OpenCL context"), std::string::npos) << last();
  clReleaseMemObject(foreign);
  clReleaseContext(other);
  clReleaseMemObject(bx);
  clReleaseMemObject(by);
  // The layer keeps the device alive: release the context first.
  clq_context_release(ctx.c);
  ctx.c = nullptr;
  std::fill(y.begin(), y.end(), std::nanf(""));
  EXPECT_EQ(clq_linear_run_host(l, x.data(), CLQ_F16, y.data(), CLQ_F32, M), CLQ_SUCCESS) << last();
  EXPECT_LT(compare_output(y.data(), DType::kF32, ref).rel_mean(), W4A16Problem::kTolerance);
  clq_linear_release(l);
}

// Int8 weight-only layers load and run through the same handle (the width from the config).
TEST(CApi, Int8LayersOnHostArrays) {
  for (bool ct : {false, true}) {
    SCOPED_TRACE(ct ? "compressed-tensors int-quantized" : "gptq 8-bit");
    TempDir d;
    W4SynthSpec s;
    s.format = ct ? W4Format::kCompressedTensors : W4Format::kGptq;
    s.bits = 8;
    s.ct_int_quantized = ct;
    s.K = 132;
    s.N = 40;
    s.group_size = ct ? -1 : 32;
    s.act_order = !ct;
    s.seed = test::seed() + 7;
    W4Synth syn(s);
    write_layer(d.path, syn);
    Ctx ctx;
    clq_linear* l = nullptr;
    ASSERT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), nullptr, 0, &l), CLQ_SUCCESS) << last();
    EXPECT_NE(std::string(clq_linear_describe(l)).find("int8"), std::string::npos) << clq_linear_describe(l);
    const int64_t M = 5;
    auto x = random_activations(M, 132, DType::kBF16, test::seed() + 8);
    auto ref = gemm_reference(x.data(), DType::kBF16, M, 132, dequantize_w4(syn.checkpoint()), 40);
    std::vector<float> y(size_t(M * 40), std::nanf(""));
    ASSERT_EQ(clq_linear_run_host(l, x.data(), CLQ_BF16, y.data(), CLQ_F32, M), CLQ_SUCCESS) << last();
    ErrorStats e = compare_output(y.data(), DType::kF32, ref);
    EXPECT_EQ(e.nan_count, 0u);
    EXPECT_LT(e.rel_mean(), W4A16Problem::kTolerance);
    clq_linear_release(l);
  }
  // A W8A8 int8 layer is refused by name, not run weight-only (other numbers).
  TempDir d;
  W4SynthSpec s = w8a8_synth_spec(16, 64, test::seed());
  s.w8a8_config = true;
  W4Synth syn(s);
  write_layer(d.path, syn);
  Ctx ctx;
  clq_linear* l = nullptr;
  EXPECT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), nullptr, 0, &l), CLQ_ERROR_NOT_SUPPORTED);
  EXPECT_NE(last().find("W8A8 int8"), std::string::npos) << last();
}

TEST(CApi, LoadFailuresAreStatusesWithMessages) {
  Ctx ctx;
  clq_linear* l = reinterpret_cast<clq_linear*>(1);
  EXPECT_EQ(clq_linear_load(ctx.c, "/nonexistent/ckpt.safetensors", kP.c_str(), nullptr, 0, &l), CLQ_ERROR_IO);
  EXPECT_EQ(l, nullptr);
  EXPECT_NE(last().find("/nonexistent/ckpt.safetensors"), std::string::npos) << last();
  EXPECT_EQ(clq_linear_load(ctx.c, nullptr, kP.c_str(), nullptr, 0, &l), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("path is NULL"), std::string::npos) << last();
  EXPECT_EQ(clq_linear_load(nullptr, "x", "y", nullptr, 0, &l), CLQ_ERROR_INVALID_ARGUMENT);

  TempDir d;
  W4SynthSpec s;
  s.format = W4Format::kGptqV2;
  s.K = 128;
  s.N = 64;
  s.group_size = 64;
  s.seed = test::seed();
  SafetensorsWriter w;
  W4Synth(s).add_to(w, kP);
  w.write(d.path + "/model.safetensors");
  EXPECT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), nullptr, 0, &l), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("cannot be told apart"), std::string::npos) << last();
  EXPECT_NE(last().find("the format argument \"gptq_v2\""), std::string::npos) << last();
  EXPECT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), "int3", 0, &l), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("'int3' is not one of"), std::string::npos) << last();
  EXPECT_EQ(clq_linear_load(ctx.c, d.path.c_str(), "nope", "gptq", 0, &l), CLQ_ERROR_FORMAT);
  ASSERT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), "gptq_v2", 0, &l), CLQ_SUCCESS) << last();
  clq_linear_release(l);
  clq_context* bad = nullptr;
  EXPECT_EQ(clq_context_open("no-such-device-anywhere", &bad), CLQ_ERROR_DEVICE_NOT_FOUND);
  EXPECT_NE(last().find("no-such-device-anywhere"), std::string::npos) << last();
}

TEST(CApi, MoeBlockMatchesTheReference) {
  const std::string M = "model.layers.3.mlp";
  MoeSynthSpec s;
  s.kind = MoeWeightKind::kInt4;
  s.E = 8;
  s.H = 256;
  s.I = 128;
  s.seed = test::seed();
  MoeSynth syn(s);
  TempDir d;
  SafetensorsWriter w;
  syn.add_to(w, M);
  w.write(d.path + "/model.safetensors");
  std::ofstream(d.path + "/quantize_config.json") << R"({"bits": 4, "group_size": 64, "quant_method": "gptq"})";

  Ctx ctx;
  clq_moe* m = nullptr;
  ASSERT_EQ(clq_moe_load(ctx.c, d.path.c_str(), M.c_str(), nullptr, 0, &m), CLQ_SUCCESS) << last();
  int64_t E = 0, H = 0, I = 0;
  ASSERT_EQ(clq_moe_shape(m, &E, &H, &I), CLQ_SUCCESS);
  EXPECT_EQ(E, 8);
  EXPECT_EQ(H, 256);
  EXPECT_EQ(I, 128);
  const int64_t T = 3;
  auto x = random_activations(T, H, DType::kBF16, test::seed() + 7);
  clq_moe_routing r;
  clq_moe_routing_init(&r);
  r.top_k = 2;
  r.renormalize = 1;
  std::vector<uint16_t> y(size_t(T * H), 0x7FC0);  // bf16 NaN poison
  ASSERT_EQ(clq_moe_run_host(m, x.data(), CLQ_BF16, y.data(), CLQ_BF16, T, &r), CLQ_SUCCESS) << last();

  // Reference: the same layer loaded through the C++ API on the test's context gives the logits
  // (the router GEMM is the device's); the host twin routes them and fp64 does the rest.
  MoeLayer layer = load_moe(d.path, M);
  FusedMoe op(test::ctx(), layer.moe);
  auto& c = test::ctx();
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  MoeRouting mr;
  mr.top_k = 2;
  mr.renormalize = true;
  op.run(dx, DType::kBF16, dy, DType::kBF16, T, mr);
  std::vector<float> logits, hw;
  std::vector<int> ids;
  op.read_logits(&logits);
  moe_route_host(logits, T, E, mr, nullptr, &ids, &hw);
  auto ref = moe_reference(layer.moe, x.data(), DType::kBF16, T, ids, hw, 2);
  ErrorStats e = compare_output(y.data(), DType::kBF16, ref);
  EXPECT_TRUE(MoeProblem::within_tolerance(e))
      << "rel " << e.rel_mean() << " max " << e.max_abs_err << " NaN " << e.nan_count;
  // The same block on caller-owned cl_mem gives the host-array result bit for bit.
  cl_int err = 0;
  cl_context cc = clq_context_cl_context(ctx.c);
  cl_command_queue q = clq_context_cl_queue(ctx.c);
  cl_mem bx = clCreateBuffer(cc, CL_MEM_READ_ONLY, x.size(), nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  cl_mem by = clCreateBuffer(cc, CL_MEM_READ_WRITE, x.size(), nullptr, &err);
  ASSERT_EQ(err, CL_SUCCESS);
  std::vector<uint16_t> y2(y.size(), 0x7FC0);
  ASSERT_EQ(clEnqueueWriteBuffer(q, bx, CL_TRUE, 0, x.size(), x.data(), 0, nullptr, nullptr), CL_SUCCESS);
  ASSERT_EQ(clEnqueueWriteBuffer(q, by, CL_TRUE, 0, y2.size() * 2, y2.data(), 0, nullptr, nullptr), CL_SUCCESS);
  ASSERT_EQ(clq_moe_run_cl(m, bx, CLQ_BF16, by, CLQ_BF16, T, &r), CLQ_SUCCESS) << last();
  ASSERT_EQ(clq_context_finish(ctx.c), CLQ_SUCCESS);
  ASSERT_EQ(clEnqueueReadBuffer(q, by, CL_TRUE, 0, y2.size() * 2, y2.data(), 0, nullptr, nullptr), CL_SUCCESS);
  EXPECT_EQ(y2, y);
  EXPECT_EQ(clq_moe_run_cl(m, bx, CLQ_BF16, by, CLQ_BF16, T + 1, &r), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("input buffer holds"), std::string::npos) << last();
  clReleaseMemObject(bx);
  clReleaseMemObject(by);
  r.top_k = 0;
  EXPECT_NE(clq_moe_run_host(m, x.data(), CLQ_BF16, y.data(), CLQ_BF16, T, &r), CLQ_SUCCESS);
  EXPECT_GT(last().size(), 0u);
  EXPECT_EQ(clq_moe_run_host(m, x.data(), CLQ_BF16, y.data(), CLQ_BF16, T, nullptr), CLQ_ERROR_INVALID_ARGUMENT);
  clq_moe_release(m);
}

// The family's routing from config.json (DeepSeek-V3 grouped sigmoid, norm_topk_prob default
// true), or found = 0 and the defaults without one.
TEST(CApi, MoeRoutingFromConfig) {
  const std::string M = "model.layers.3.mlp";
  MoeSynthSpec s;
  s.kind = MoeWeightKind::kDense;
  s.E = 16;
  s.H = 128;
  s.I = 64;
  s.bias = true;
  MoeSynth syn(s);
  TempDir d;
  SafetensorsWriter w;
  syn.add_to(w, M);
  w.write(d.path + "/model.safetensors");
  Ctx ctx;
  clq_moe* m = nullptr;
  ASSERT_EQ(clq_moe_load(ctx.c, d.path.c_str(), M.c_str(), nullptr, 0, &m), CLQ_SUCCESS) << last();
  clq_moe_routing r;
  int found = -1;
  ASSERT_EQ(clq_moe_config_routing(m, &r, &found), CLQ_SUCCESS) << last();
  EXPECT_EQ(found, 0);
  EXPECT_EQ(r.top_k, 2);
  clq_moe_release(m);
  std::ofstream(d.path + "/config.json")
      << R"({"model_type": "deepseek_v3", "num_experts_per_tok": 6, "n_group": 4, "topk_group": 2,)"
      << R"( "routed_scaling_factor": 2.5})";
  ASSERT_EQ(clq_moe_load(ctx.c, d.path.c_str(), M.c_str(), nullptr, 0, &m), CLQ_SUCCESS) << last();
  ASSERT_EQ(clq_moe_config_routing(m, &r, &found), CLQ_SUCCESS) << last();
  EXPECT_EQ(found, 1);
  EXPECT_EQ(r.top_k, 6);
  EXPECT_EQ(r.grouped, 1);
  EXPECT_EQ(r.n_group, 4);
  EXPECT_EQ(r.topk_group, 2);
  EXPECT_EQ(r.renormalize, 1);
  EXPECT_EQ(r.softmax_scores, 0);
  EXPECT_FLOAT_EQ(r.routed_scaling, 2.5f);
  EXPECT_EQ(clq_moe_config_routing(m, nullptr, &found), CLQ_ERROR_INVALID_ARGUMENT);
  clq_moe_release(m);
}

TEST(CApi, ThreadsShareAContext) {
  TempDir d;
  W4SynthSpec s;
  s.format = W4Format::kGptqV2;
  s.K = 256;
  s.N = 128;
  s.group_size = 64;
  s.seed = test::seed();
  W4Synth syn(s);
  SafetensorsWriter w;
  syn.add_to(w, kP);
  w.write(d.path + "/model.safetensors");
  Ctx ctx;
  clq_linear* l[2] = {nullptr, nullptr};
  for (auto& p : l) ASSERT_EQ(clq_linear_load(ctx.c, d.path.c_str(), kP.c_str(), "gptq_v2", 0, &p), CLQ_SUCCESS);
  const int kRuns = 12;
  std::vector<std::vector<uint8_t>> xs, want(kRuns), got(kRuns);
  for (int i = 0; i < kRuns; ++i) {
    const int64_t M = 1 + i % 4;
    xs.push_back(random_activations(M, 256, DType::kF16, test::seed() + uint64_t(i)));
    want[size_t(i)].assign(size_t(M * 128) * 2, 0xFF);
    got[size_t(i)].assign(size_t(M * 128) * 2, 0xFF);
    ASSERT_EQ(clq_linear_run_host(l[0], xs.back().data(), CLQ_F16, want[size_t(i)].data(), CLQ_F16, M), CLQ_SUCCESS);
  }
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = t; i < kRuns; i += 4)
        if (clq_linear_run_host(l[t % 2], xs[size_t(i)].data(), CLQ_F16, got[size_t(i)].data(), CLQ_F16,
                                1 + i % 4) != CLQ_SUCCESS)
          ++failures;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (int i = 0; i < kRuns; ++i) EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "run " << i;
  for (auto* p : l) clq_linear_release(p);
}

namespace {

const char* kModelLayers[4] = {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj",
                               "model.layers.2.mlp.gate_proj", "model.layers.3.mlp"};

struct Report {
  clq_report* r = nullptr;
  ~Report() { clq_report_release(r); }
  nlohmann::json json() const { return nlohmann::json::parse(clq_report_json(r)); }
};

// Every call the progress callback receives, as "index/total prefix before|ok|FAIL".
struct Progress {
  std::vector<std::string> calls;
  static void fn(void* user, size_t i, size_t n, const char* prefix, int done, int ok) {
    static_cast<Progress*>(user)->calls.push_back(std::to_string(i) + "/" + std::to_string(n) + " " + prefix + " " +
                                                  (done ? (ok ? "ok" : "FAIL") : "before"));
  }
};

}  // namespace

TEST(CApi, InspectListsTheSyntheticModel) {
  TempDir d;
  write_synthetic_model(d.path, {test::seed(), ""});
  Ctx ctx;
  Report rep;
  ASSERT_EQ(clq_inspect(ctx.c, (d.path + "/model.safetensors.index.json").c_str(), nullptr, 0, &rep.r), CLQ_SUCCESS)
      << last();
  size_t n = 0, failed = 9;
  ASSERT_EQ(clq_report_summary(rep.r, &n, &failed, nullptr, nullptr), CLQ_SUCCESS) << last();
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(failed, 0u);
  const nlohmann::json j = rep.json();
  ASSERT_EQ(j["layers"].size(), 4u);
  EXPECT_EQ(j["device"], clq_context_device_name(ctx.c));
  for (size_t i = 0; i < 4; ++i) {
    const char* prefix = nullptr;
    int ok = 0;
    ASSERT_EQ(clq_report_layer(rep.r, i, &prefix, &ok, nullptr, nullptr), CLQ_SUCCESS) << last();
    EXPECT_STREQ(prefix, kModelLayers[i]);
    EXPECT_EQ(ok, 1);
    EXPECT_EQ(j["layers"][i]["prefix"], kModelLayers[i]);
    EXPECT_TRUE(j["layers"][i].contains("variant")) << j["layers"][i].dump();
  }
  EXPECT_EQ(j["layers"][0]["K"], 512);
  EXPECT_EQ(j["layers"][0]["N"], 264);
  EXPECT_EQ(j["layers"][0]["group_size"], 128);
  EXPECT_EQ(j["layers"][3]["kind"], "moe");
  EXPECT_EQ(j["layers"][3]["shared_I"], 384);
  EXPECT_EQ(clq_report_layer(rep.r, 4, nullptr, nullptr, nullptr, nullptr), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("layer index 4 is out of range: the report has 4 layers"), std::string::npos) << last();

  // Without a device: the same layers, no variants.
  Report plain;
  ASSERT_EQ(clq_inspect(nullptr, d.path.c_str(), nullptr, 0, &plain.r), CLQ_SUCCESS) << last();
  const nlohmann::json p = plain.json();
  EXPECT_TRUE(p["device"].is_null());
  ASSERT_EQ(p["layers"].size(), 4u);
  EXPECT_FALSE(p["layers"][0].contains("variant"));
}

TEST(CApi, InspectListsARefusedLayer) {
  TempDir d;
  write_synthetic_model(d.path, {test::seed(), "nan-scale"});
  Report rep;
  ASSERT_EQ(clq_inspect(nullptr, d.path.c_str(), nullptr, 0, &rep.r), CLQ_SUCCESS) << last();
  size_t failed = 0;
  ASSERT_EQ(clq_report_summary(rep.r, nullptr, &failed, nullptr, nullptr), CLQ_SUCCESS);
  EXPECT_EQ(failed, 1u);
  int ok = 1;
  const char* msg = nullptr;
  ASSERT_EQ(clq_report_layer(rep.r, 0, nullptr, &ok, nullptr, &msg), CLQ_SUCCESS);
  EXPECT_EQ(ok, 0);
  EXPECT_NE(std::string(msg).find("[InvalidArgument]"), std::string::npos) << msg;
  EXPECT_NE(std::string(msg).find("q_proj.scales"), std::string::npos) << msg;
  EXPECT_EQ(rep.json()["layers"][0]["error"]["status"], "InvalidArgument");
}

TEST(CApi, VerifyRunsEveryLayerWithProgress) {
  TempDir d;
  write_synthetic_model(d.path, {test::seed(), ""});
  Ctx ctx;
  Progress prog;
  clq_verify_options o;
  clq_verify_options_init(&o);
  EXPECT_EQ(o.tokens, 5);
  EXPECT_EQ(o.seed, 1u);
  o.seed = test::seed();
  o.progress = &Progress::fn;
  o.progress_user = &prog;
  Report rep;
  ASSERT_EQ(clq_verify(ctx.c, d.path.c_str(), &o, &rep.r), CLQ_SUCCESS) << last();
  ASSERT_EQ(prog.calls.size(), 8u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(prog.calls[2 * i], std::to_string(i) + "/4 " + kModelLayers[i] + " before");
    EXPECT_EQ(prog.calls[2 * i + 1], std::to_string(i) + "/4 " + kModelLayers[i] + " ok");
  }
  size_t n = 0, failed = 9;
  double worst = -1;
  const char* worst_layer = nullptr;
  ASSERT_EQ(clq_report_summary(rep.r, &n, &failed, &worst, &worst_layer), CLQ_SUCCESS);
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(failed, 0u);
  EXPECT_GT(worst, 0.0);  // rounding exists: an exact zero would mean nothing was compared
  EXPECT_LT(worst, 1e-3);
  EXPECT_GT(std::strlen(worst_layer), 0u);
  const nlohmann::json j = rep.json();
  EXPECT_EQ(j["ok"], true);
  ASSERT_EQ(j["layers"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    double rel = -1;
    int ok = 0;
    ASSERT_EQ(clq_report_layer(rep.r, i, nullptr, &ok, &rel, nullptr), CLQ_SUCCESS);
    EXPECT_EQ(ok, 1);
    EXPECT_DOUBLE_EQ(rel, j["layers"][i]["rel_err"].get<double>());
    EXPECT_LT(rel, j["layers"][i]["tolerance"].get<double>());
    EXPECT_FALSE(j["layers"][i]["variant_ran"].get<std::string>().empty());
  }

  // A regex selects layers; NULL options are the defaults.
  Report one;
  o.layers = "mlp$";
  o.progress = nullptr;
  ASSERT_EQ(clq_verify(ctx.c, d.path.c_str(), &o, &one.r), CLQ_SUCCESS) << last();
  const nlohmann::json j1 = one.json();
  ASSERT_EQ(j1["layers"].size(), 1u);
  EXPECT_EQ(j1["layers"][0]["prefix"], "model.layers.3.mlp");
  Report all;
  ASSERT_EQ(clq_verify(ctx.c, d.path.c_str(), nullptr, &all.r), CLQ_SUCCESS) << last();
  EXPECT_EQ(all.json()["layers"].size(), 4u);
}

TEST(CApi, VerifyNamesTheFailedLayer) {
  Ctx ctx;
  {  // numbers broken: the loader accepts the layer, the check fails it
    TempDir d;
    write_synthetic_model(d.path, {test::seed(), "huge-scale"});
    Progress prog;
    clq_verify_options o;
    clq_verify_options_init(&o);
    o.progress = &Progress::fn;
    o.progress_user = &prog;
    Report rep;
    ASSERT_EQ(clq_verify(ctx.c, d.path.c_str(), &o, &rep.r), CLQ_ERROR_VERIFICATION_FAILED);
    EXPECT_EQ(last(), "1 of 4 layers failed: model.layers.2.mlp.gate_proj");
    ASSERT_NE(rep.r, nullptr);  // the report is still handed over
    EXPECT_EQ(prog.calls[5], "2/4 model.layers.2.mlp.gate_proj FAIL");
    size_t failed = 0;
    ASSERT_EQ(clq_report_summary(rep.r, nullptr, &failed, nullptr, nullptr), CLQ_SUCCESS);
    EXPECT_EQ(failed, 1u);
    for (size_t i = 0; i < 4; ++i) {
      int ok = -1;
      ASSERT_EQ(clq_report_layer(rep.r, i, nullptr, &ok, nullptr, nullptr), CLQ_SUCCESS);
      EXPECT_EQ(ok, i == 2 ? 0 : 1) << kModelLayers[i];
    }
    EXPECT_EQ(rep.json()["ok"], false);
  }
  {  // a layer the loader refuses: failed by name, with the refusal
    TempDir d;
    write_synthetic_model(d.path, {test::seed(), "nan-scale"});
    Report rep;
    ASSERT_EQ(clq_verify(ctx.c, d.path.c_str(), nullptr, &rep.r), CLQ_ERROR_VERIFICATION_FAILED);
    EXPECT_EQ(last(), "1 of 4 layers failed: model.layers.0.self_attn.q_proj");
    int ok = 1;
    const char* msg = nullptr;
    ASSERT_EQ(clq_report_layer(rep.r, 0, nullptr, &ok, nullptr, &msg), CLQ_SUCCESS);
    EXPECT_EQ(ok, 0);
    EXPECT_NE(std::string(msg).find("[InvalidArgument]"), std::string::npos) << msg;
  }
}

TEST(CApi, VerifyBadInputIsAStatusWithoutAReport) {
  TempDir d;
  write_synthetic_model(d.path, {test::seed(), ""});
  Ctx ctx;
  clq_verify_options o;
  clq_verify_options_init(&o);
  clq_report* r = reinterpret_cast<clq_report*>(1);
  EXPECT_EQ(clq_verify(ctx.c, (d.path + "/missing").c_str(), &o, &r), CLQ_ERROR_IO);
  EXPECT_EQ(r, nullptr);
  EXPECT_NE(last().find("missing"), std::string::npos) << last();
  EXPECT_EQ(clq_inspect(ctx.c, (d.path + "/missing").c_str(), nullptr, 0, &r), CLQ_ERROR_IO);
  EXPECT_EQ(r, nullptr);
  o.layers = "(";
  EXPECT_EQ(clq_verify(ctx.c, d.path.c_str(), &o, &r), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("layer pattern '(' is not a regular expression"), std::string::npos) << last();
  EXPECT_EQ(r, nullptr);
  o.layers = "nope";
  EXPECT_EQ(clq_verify(ctx.c, d.path.c_str(), &o, &r), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("no layer matches 'nope' (4 layers"), std::string::npos) << last();
  o.layers = nullptr;
  o.tokens = 0;
  EXPECT_EQ(clq_verify(ctx.c, d.path.c_str(), &o, &r), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("tokens = 0 must be in [1, 4096]"), std::string::npos) << last();
  EXPECT_EQ(clq_verify(nullptr, d.path.c_str(), nullptr, &r), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("ctx is NULL"), std::string::npos) << last();
  EXPECT_EQ(clq_verify(ctx.c, nullptr, nullptr, &r), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(clq_verify(ctx.c, d.path.c_str(), nullptr, nullptr), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(clq_report_summary(nullptr, nullptr, nullptr, nullptr, nullptr), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(clq_report_json(nullptr), "");
  clq_report_release(nullptr);
}

// Online quantization through the C API: a dense layer quantized at load runs its method against
// the fp64 reference on the quantized weights; a whole checkpoint written by
// clq_quantize_checkpoint loads back through clq_linear_load; refusals are statuses.
TEST(CApi, OnlineQuantization) {
  TempDir d;
  const int64_t K = 256, N = 136, M = 2;
  auto wbytes = random_activations(N, K, DType::kBF16, test::seed() + 40);
  auto qbytes = random_activations(128, K, DType::kBF16, test::seed() + 41);
  {
    SafetensorsWriter w;
    w.add(kP + ".weight", StDType::kBF16, {N, K}, wbytes.data(), wbytes.size());
    w.add("model.layers.0.self_attn.q_proj.weight", StDType::kBF16, {128, K}, qbytes.data(), qbytes.size());
    w.add("lm_head.weight", StDType::kBF16, {128, K}, qbytes.data(), qbytes.size());
    w.write(d.path + "/model.safetensors");
  }
  Ctx ctx;
  ASSERT_NE(ctx.c, nullptr);
  auto x = random_activations(M, K, DType::kBF16, test::seed() + 42);
  for (const char* method : {"int4", "int8", "fp8-block"}) {
    clq_linear* l = nullptr;
    ASSERT_EQ(clq_linear_load_quantized(ctx.c, d.path.c_str(), kP.c_str(), method, 0, 0, &l), CLQ_SUCCESS) << last();
    double rel = -1, mx = -1;
    ASSERT_EQ(clq_linear_quant_error(l, &rel, &mx), CLQ_SUCCESS) << last();
    EXPECT_GT(rel, 0.0) << method;
    EXPECT_LT(rel, 0.2) << method;
    std::vector<float> y(size_t(M * N), std::nanf(""));
    ASSERT_EQ(clq_linear_run_host(l, x.data(), CLQ_BF16, y.data(), CLQ_F32, M), CLQ_SUCCESS) << last();
    // The reference on the same quantized weights: the host twin's (the device op is bit-identical).
    QuantSpec spec = quant_spec_from(method, 0, false);
    DenseWeight dw{kP + ".weight", DType::kBF16, N, K, wbytes.data()};
    const QuantizedWeight q = quantize_weight_host(dw, spec);
    std::vector<double> ref;
    if (spec.is_int()) {
      std::vector<double> W(size_t(K * N));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) W[size_t(k * N + n)] = q.dequant(n, k);
      ref = gemm_reference(x.data(), DType::kBF16, M, K, W, N);
    } else {
      ref = fp8_gemm_reference(quantized_tensors(q, kP).fp8(), x.data(), DType::kBF16, M, Fp8Act::kBlockDynamic);
    }
    const ErrorStats e = compare_output(y.data(), DType::kF32, ref);
    EXPECT_EQ(e.nan_count, 0u) << method;
    EXPECT_LT(e.rel_mean(), 1e-3) << method;
    EXPECT_NEAR(rel, quant_error(dw, q).rel_fro(), 1e-12) << method;
    for (float v : y) ASSERT_TRUE(std::isfinite(v)) << method;
    clq_linear_release(l);
  }
  clq_linear* bad = nullptr;
  EXPECT_EQ(clq_linear_load_quantized(ctx.c, d.path.c_str(), kP.c_str(), "int3", 0, 0, &bad), CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("'int3'"), std::string::npos) << last();
  EXPECT_EQ(clq_linear_load_quantized(ctx.c, d.path.c_str(), kP.c_str(), "fp8-block", 64, 0, &bad), CLQ_ERROR_INVALID_ARGUMENT);

  const std::string out = d.path + "/q";
  size_t need = 0;
  ASSERT_EQ(clq_quantize_checkpoint(ctx.c, d.path.c_str(), out.c_str(), "int8", -1, 1, nullptr, 0, nullptr, 0, &need),
            CLQ_SUCCESS)
      << last();
  EXPECT_GT(need, 0u);
  clq_linear* back = nullptr;
  ASSERT_EQ(clq_linear_load(ctx.c, out.c_str(), kP.c_str(), nullptr, 0, &back), CLQ_SUCCESS) << last();
  EXPECT_NE(std::string(clq_linear_describe(back)).find("int8"), std::string::npos) << clq_linear_describe(back);
  clq_linear_release(back);
  EXPECT_EQ(clq_linear_load(ctx.c, out.c_str(), "lm_head", nullptr, 0, &back), CLQ_ERROR_NOT_SUPPORTED) << last();
  std::string report(4096, '\0');
  EXPECT_EQ(clq_quantize_checkpoint(ctx.c, d.path.c_str(), out.c_str(), "int4", 0, 0, "q_proj", 0, report.data(),
                                    report.size(), nullptr),
            CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("is not empty"), std::string::npos) << last();
  ASSERT_EQ(clq_quantize_checkpoint(ctx.c, d.path.c_str(), out.c_str(), "int4", 0, 0, "q_proj", 1, report.data(),
                                    report.size(), nullptr),
            CLQ_SUCCESS)
      << last();
  EXPECT_NE(report.find("\"model.layers.0.self_attn.q_proj\""), std::string::npos) << report;
  EXPECT_EQ(report.find("down_proj"), std::string::npos) << report;

  // clq_quantize: the same with options, here a shard size that splits the output.
  clq_quantize_options qo;
  clq_quantize_options_init(&qo);
  EXPECT_EQ(qo.max_shard_size, 5000000000ull);
  EXPECT_STREQ(qo.method, "int4");
  qo.method = "fp8-block";
  qo.max_shard_size = 20000;
  const std::string sharded = d.path + "/sharded";
  ASSERT_EQ(clq_quantize(ctx.c, d.path.c_str(), sharded.c_str(), &qo, report.data(), report.size(), nullptr), CLQ_SUCCESS)
      << last();
  EXPECT_NE(report.find("model-00001-of-"), std::string::npos) << report;
  EXPECT_TRUE(std::filesystem::exists(sharded + "/model.safetensors.index.json"));
  ASSERT_EQ(clq_linear_load(ctx.c, sharded.c_str(), kP.c_str(), nullptr, 0, &back), CLQ_SUCCESS) << last();
  EXPECT_NE(std::string(clq_linear_describe(back)).find("fp8"), std::string::npos) << clq_linear_describe(back);
  clq_linear_release(back);
  qo.max_shard_size = 0;
  EXPECT_EQ(clq_quantize(ctx.c, d.path.c_str(), (d.path + "/zero").c_str(), &qo, nullptr, 0, nullptr),
            CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("max shard size 0 bytes"), std::string::npos) << last();
  EXPECT_FALSE(std::filesystem::exists(d.path + "/zero"));
  qo.method = nullptr;
  EXPECT_EQ(clq_quantize(ctx.c, d.path.c_str(), (d.path + "/zero").c_str(), &qo, nullptr, 0, nullptr),
            CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("options->method is NULL"), std::string::npos) << last();
  EXPECT_EQ(clq_quantize_checkpoint(ctx.c, d.path.c_str(), out.c_str(), nullptr, 0, 0, nullptr, 0, nullptr, 0, nullptr),
            CLQ_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("method is NULL"), std::string::npos) << last();
}
