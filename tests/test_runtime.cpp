// runtime/: device selection errors, build failures that carry the log, the kernel-source
// registry, and the on-disk program cache surviving corrupt, truncated and foreign entries.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "runtime/kernel_sources.h"
#include "runtime/ptx_patch.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

namespace {
const char* kSmallKernel = "__kernel void add_one(__global int* p) { p[get_global_id(0)] += 1; }\n";

// Builds kSmallKernel through a fresh ProgramCache (empty memory level) and checks it runs.
CacheStats build_and_run(const std::string& options) {
  auto& c = test::ctx();
  ProgramCache cache(c.cl_context(), c.device(), c.features());
  cl::Program p = cache.get_source("add_one", kSmallKernel, options);
  cl_int err;
  cl::Kernel k(p, "add_one", &err);
  EXPECT_EQ(err, CL_SUCCESS);
  std::vector<int> v = {1, 2, 3, 4};
  cl::Buffer b = c.alloc(16);
  c.write(b, v.data(), 16);
  k.setArg(0, b);
  launch(c, k, cl::NDRange(4), cl::NullRange, "add_one");
  c.read(b, v.data(), 16);
  EXPECT_EQ(v, (std::vector<int>{2, 3, 4, 5}));
  return cache.stats();
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_all(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}
}  // namespace

TEST(Runtime, UnknownDeviceNameIsAClearError) {
  try {
    select_device("no-such-device");
    FAIL() << "expected DeviceNotFound";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kDeviceNotFound);
    EXPECT_NE(std::string(e.what()).find("no-such-device"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("available"), std::string::npos);
  }
}

TEST(Runtime, DeviceIndexOutOfRange) {
  try {
    select_device("999");
    FAIL() << "expected DeviceNotFound";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kDeviceNotFound);
    EXPECT_NE(std::string(e.what()).find("999"), std::string::npos);
  }
}

TEST(Runtime, SelectionBySubstringIsCaseInsensitive) {
  auto all = list_devices();
  ASSERT_FALSE(all.empty());
  std::string name = all.back().features.device_name;
  std::string upper = name;
  for (auto& ch : upper) ch = char(std::toupper((unsigned char)ch));
  EXPECT_EQ(select_device(upper).features.device_name, name);
  EXPECT_EQ(select_device(std::to_string(all.back().index)).features.device_name, name);
}

// Issue 16: what users type. The words match vendor and version strings and device types.
TEST(Runtime, SelectionByVendorVersionAndType) {
  auto all = list_devices();
  for (auto& e : all) {
    const DeviceFeatures& f = e.features;
    auto lower = [](std::string s) {
      for (auto& ch : s) ch = char(std::tolower((unsigned char)ch));
      return s;
    };
    if (!f.platform_vendor.empty()) {
      const DeviceFeatures& got = select_device(f.platform_vendor).features;
      const std::string hay = lower(got.platform_name + got.platform_vendor + got.platform_version + got.device_name +
                                    got.vendor + got.driver_version);
      EXPECT_NE(hay.find(lower(f.platform_vendor)), std::string::npos);
    }
    if (lower(f.platform_version).find("pocl") != std::string::npos) {
      EXPECT_NE(lower(select_device("pocl").features.platform_version).find("pocl"), std::string::npos);
    }
    if (f.platform_name == "rusticl") {
      EXPECT_EQ(select_device("RustiCL").features.platform_name, "rusticl");
    }
    if (f.is_cpu) {
      EXPECT_TRUE(select_device("cpu").features.is_cpu);
    }
    if (f.is_gpu) {
      EXPECT_TRUE(select_device("GPU").features.is_gpu);
    }
  }
  bool any_gpu = false;
  for (auto& e : all) any_gpu |= e.features.is_gpu;
  if (!any_gpu) {
    EXPECT_THROW(select_device("gpu"), Error);
  }
}

TEST(Runtime, PoclCacheProblemIsNamed) {
  test::ScopedEnv a("POCL_CACHE_DIR", nullptr), b("XDG_CACHE_HOME", nullptr), h("HOME", "/proc/clq-none");
  const std::string why = pocl_cache_problem();
  if (why.empty()) GTEST_SKIP() << "PoCL is not installed here";
  EXPECT_NE(why.find("/proc/clq-none/.cache/pocl"), std::string::npos) << why;
  EXPECT_NE(why.find("POCL_CACHE_DIR"), std::string::npos) << why;
  test::ScopedEnv ok("POCL_CACHE_DIR", "/tmp");
  EXPECT_EQ(pocl_cache_problem(), "");
}

TEST(Runtime, BuildFailureReportsFileOptionsAndLog) {
  auto& c = test::ctx();
  ProgramCache cache(c.cl_context(), c.device(), c.features());
  try {
    cache.get_source("broken.cl", "__kernel void k(__global int* p) { p[0] = undefined_symbol_xyz; }", "-DFOO=1");
    FAIL() << "expected BuildFailed";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(e.status(), Status::kBuildFailed);
    EXPECT_NE(m.find("broken.cl"), std::string::npos);
    EXPECT_NE(m.find("-DFOO=1"), std::string::npos);
    EXPECT_NE(m.find("undefined_symbol_xyz"), std::string::npos) << "build log missing: " << m;
  }
}

TEST(Runtime, EmbeddedKernelsExpandIncludes) {
  auto names = embedded_kernel_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "convert/convert.cl"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "common/numeric.clh"), names.end());
  std::string src = expanded_kernel_source("convert/convert.cl");
  EXPECT_EQ(src.find("#include"), std::string::npos);
  EXPECT_NE(src.find("clq_round_to_format"), std::string::npos);
}

TEST(Runtime, KernelDirOverridesEmbeddedSources) {
  std::string dir = test::temp_dir("kdir");
  ::mkdir((dir + "/convert").c_str(), 0755);
  write_all(dir + "/convert/convert.cl", "// from the override folder\n__kernel void x() {}\n");
  test::ScopedEnv env("CLQ_KERNEL_DIR", dir.c_str());
  EXPECT_NE(kernel_file_text("convert/convert.cl").find("from the override folder"), std::string::npos);
  try {
    kernel_file_text("missing.cl");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kIoError);
  }
}

TEST(ProgramCache, DiskHitThenCorruptEntriesAreRebuiltAndOverwritten) {
  std::string dir = test::temp_dir("cache");
  test::ScopedEnv e1("CLQ_CACHE_DIR", dir.c_str());
  test::ScopedEnv e2("CLQ_CACHE", nullptr);
  const std::string opts = "-DCACHE_TEST=1";

  CacheStats s1 = build_and_run(opts);
  EXPECT_EQ(s1.builds, 1);
  EXPECT_EQ(s1.disk_writes, 1);
  auto& c = test::ctx();
  ProgramCache probe(c.cl_context(), c.device(), c.features());
  std::string path = probe.disk_path(kSmallKernel, opts);
  std::string good = read_all(path);
  ASSERT_GT(good.size(), 140u);

  CacheStats s2 = build_and_run(opts);
  EXPECT_EQ(s2.disk_hits, 1);
  EXPECT_EQ(s2.builds, 0);

  // Each damaged form must be detected, rebuilt from source, and the file rewritten whole.
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x5A;
  std::string foreign = good;
  foreign[10] = (foreign[10] == 'a') ? 'b' : 'a';  // a key from another source/device
  for (const std::string& bad :
       {good.substr(0, good.size() / 2), flipped, foreign, std::string("garbage"), std::string()}) {
    write_all(path, bad);
    CacheStats s = build_and_run(opts);
    EXPECT_EQ(s.builds, 1);
    EXPECT_EQ(s.disk_rejected, bad.empty() ? 1 : 1);
    EXPECT_EQ(s.disk_writes, 1);
    // Rewritten whole: a valid entry again (the hit below proves it), not the damaged bytes. Its
    // size need not equal the first one's: PoCL's binaries differ between a cold and a warm
    // PoCL cache.
    const std::string rewritten = read_all(path);
    EXPECT_GT(rewritten.size(), 140u);
    EXPECT_NE(rewritten, bad);
    CacheStats again = build_and_run(opts);
    EXPECT_EQ(again.disk_hits, 1) << "rewritten entry must be a hit";
  }
}

TEST(Runtime, SetArgsNamesTheKernelAndArgument) {
  auto& c = test::ctx();
  ProgramCache cache(c.cl_context(), c.device(), c.features());
  cl::Program p = cache.get_source("add_one", kSmallKernel, "-DSETARGS=1");
  cl::Kernel k(p, "add_one");
  try {
    set_args(k, cl_char(1));  // a 1-byte value where a buffer belongs
    FAIL() << "expected the argument to be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add_one, argument 0"), std::string::npos) << e.what();
  }
}

TEST(ProgramCache, OffMeansNoFiles) {
  std::string dir = test::temp_dir("cacheoff");
  test::ScopedEnv e1("CLQ_CACHE_DIR", dir.c_str());
  test::ScopedEnv e2("CLQ_CACHE", "off");
  EXPECT_EQ(cache_dir(), "");
  CacheStats s = build_and_run("-DCACHE_OFF_TEST=1");
  EXPECT_EQ(s.builds, 1);
  EXPECT_EQ(s.disk_writes, 0);
}

TEST(ProgramCache, MemoryLevelHitsWithinOneCache) {
  auto& c = test::ctx();
  ProgramCache cache(c.cl_context(), c.device(), c.features());
  cache.get_source("add_one", kSmallKernel, "-DMEM=1");
  cache.get_source("add_one", kSmallKernel, "-DMEM=1");
  EXPECT_EQ(cache.stats().memory_hits, 1);
  cache.get_source("add_one", kSmallKernel, "-DMEM=2");  // other options: another program
  EXPECT_EQ(cache.stats().memory_hits, 1);
}

TEST(Status, NamesAndClErrors) {
  EXPECT_EQ(cl_error_name(-5), "CL_OUT_OF_RESOURCES");
  EXPECT_EQ(cl_error_name(-9999), "CL_UNKNOWN_ERROR(-9999)");
  EXPECT_STREQ(status_name(Status::kInvalidShape), "InvalidShape");
  try {
    check_cl(-54, "enqueue foo");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(int(e.status()), -54);
    EXPECT_NE(std::string(e.what()).find("CL_INVALID_WORK_GROUP_SIZE"), std::string::npos);
  }
}

// Ops fetch their kernels on every call: a repeated lookup must come from the context's memo
// (no new program-cache request), and different options must stay different kernels.
TEST(Runtime, KernelLookupsAreMemoizedPerContext) {
  auto& c = test::ctx();
  const size_t before = c.kernels_memoized();
  cl::Kernel a = c.kernel("convert/convert.cl", "decode_fp16", "-DMEMO_TEST_A=1");
  const int after_first = c.programs().stats().memory_hits;
  for (int i = 0; i < 5; ++i) {
    cl::Kernel again = c.kernel("convert/convert.cl", "decode_fp16", "-DMEMO_TEST_A=1");
    EXPECT_EQ(again(), a());
  }
  EXPECT_EQ(c.programs().stats().memory_hits, after_first);
  EXPECT_EQ(c.kernels_memoized(), before + 1);
  cl::Kernel b = c.kernel("convert/convert.cl", "decode_fp16", "-DMEMO_TEST_B=1");
  EXPECT_NE(b(), a());
  EXPECT_EQ(c.kernels_memoized(), before + 2);
}

// The PTX rewrite is text in, text out: checked here on any device.
TEST(PtxPatch, RewritesTargetMarkersAndDeclarations) {
  const std::string ptx =
      "//\n.version 8.5\n.target sm_90\n.address_size 64\n\n.entry k(\n)\n{\n"
      "\t// begin inline asm\n\t// CLQ_MMA %f1 %f2 %r7 %rd3\n\t// end inline asm\n"
      "\t// CLQ_FENCE\n\tret;\n}\n";
  PtxPatch p;
  p.target = "sm_90a";
  p.markers = {{"CLQ_MMA", "op.x {{0}, {1}}, {2}, {3};"}, {"CLQ_FENCE", "fence.a;\nfence.b;"}};
  p.module_decls = {".shared .align 128 .b8 big[4096];"};
  const std::string out = apply_ptx_patch(ptx, p);
  EXPECT_NE(out.find(".target sm_90a\n"), std::string::npos) << out;
  EXPECT_EQ(out.find(".target sm_90\n"), std::string::npos);
  EXPECT_NE(out.find("op.x {%f1, %f2}, %r7, %rd3;"), std::string::npos) << out;
  EXPECT_NE(out.find("fence.a;\nfence.b;\n"), std::string::npos);
  EXPECT_EQ(out.find("CLQ_"), std::string::npos);
  EXPECT_NE(out.find(".address_size 64\n.shared .align 128 .b8 big[4096];\n"), std::string::npos) << out;
  EXPECT_NE(out.find("// begin inline asm"), std::string::npos);  // other comments stay
  // A different patch is a different program: the key must differ.
  PtxPatch q = p;
  q.module_decls[0] = ".shared .align 128 .b8 big[8192];";
  EXPECT_NE(p.key(), q.key());
}

TEST(PtxPatch, RefusesWhatItCannotRewrite) {
  PtxPatch p;
  p.target = "sm_90a";
  p.markers = {{"CLQ_MMA", "op {0} {3};"}};
  auto status_of = [&](const std::string& text) {
    try {
      apply_ptx_patch(text, p);
    } catch (const Error& e) {
      return e.status();
    }
    return Status::kSuccess;
  };
  EXPECT_EQ(status_of("not ptx at all\n// CLQ_MMA a b c d\n"), Status::kBuildFailed);     // no .target
  EXPECT_EQ(status_of(".target sm_90\n// CLQ_MMA a b\n"), Status::kBuildFailed);          // operand {3} missing
  EXPECT_EQ(status_of(".target sm_90\n// something else\n"), Status::kBuildFailed);       // marker never occurs
  EXPECT_EQ(status_of(".target sm_90\n\t// CLQ_MMA a b c d\n"), Status::kSuccess);
  // An optional marker may be absent (a patch shared by kernels that use some of its markers),
  // and being optional is part of the program-cache key.
  const std::string before = p.key();
  p.optional_markers = {"CLQ_MMA"};
  EXPECT_EQ(status_of(".target sm_90\n// something else\n"), Status::kSuccess);
  EXPECT_NE(p.key(), before);
}

// Off NVIDIA the program binary is not PTX: the patched build says so instead of loading junk.
TEST(PtxPatch, NonPtxDevicesGetAClearBuildError) {
  auto& c = test::ctx();
  if (c.features().nv_cc_major >= 0) GTEST_SKIP() << "NVIDIA returns PTX; the wgmma probe covers it there";
  PtxPatch p;
  p.target = "sm_90a";
  try {
    c.kernel_patched("convert/convert.cl", "decode_fp16", "-DPATCH_TEST=1", p);
    FAIL() << "a non-PTX binary was patched";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kBuildFailed);
    EXPECT_NE(std::string(e.what()).find(".target"), std::string::npos) << e.what();
  }
}

// Issue 16: a FIFO or folder at an entry's path is skipped (never opened blocking, never
// replaced), and a size field larger than the file is refused before anything is allocated.
TEST(ProgramCache, SpecialEntriesAndBadSizesAreSkipped) {
  std::string dir = test::temp_dir("cachespecial");
  test::ScopedEnv e1("CLQ_CACHE_DIR", dir.c_str());
  test::ScopedEnv e2("CLQ_CACHE", nullptr);
  const std::string opts = "-DCACHE_SPECIAL=1";
  auto& c = test::ctx();
  ProgramCache probe(c.cl_context(), c.device(), c.features());
  const std::string path = probe.disk_path(kSmallKernel, opts);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  CacheStats s = build_and_run(opts);
  EXPECT_EQ(s.builds, 1);
  EXPECT_EQ(s.disk_rejected, 1);
  EXPECT_EQ(s.disk_writes, 0);
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  ::unlink(path.c_str());
  ASSERT_EQ(::mkdir(path.c_str(), 0700), 0);
  s = build_and_run(opts);
  EXPECT_EQ(s.builds, 1);
  EXPECT_EQ(s.disk_rejected, 1);
  ::rmdir(path.c_str());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
  // A valid entry whose size field claims 2^30 bytes.
  s = build_and_run(opts);
  EXPECT_EQ(s.disk_writes, 1);
  std::string entry = read_all(path);
  ASSERT_GT(entry.size(), 144u);
  const uint64_t huge = uint64_t(1) << 30;
  entry.replace(72, 8, std::string(reinterpret_cast<const char*>(&huge), 8));
  write_all(path, entry);
  s = build_and_run(opts);
  EXPECT_EQ(s.disk_rejected, 1);
  EXPECT_EQ(s.builds, 1);
  EXPECT_EQ(s.disk_writes, 1);
}

// Issue 16: an entry with the right key and digest that holds another program's binary once
// failed every run with CL_INVALID_KERNEL_NAME; now the missing kernel triggers a rebuild.
TEST(ProgramCache, ForeignBinaryUnderTheRightKeyIsRebuilt) {
  std::string dir = test::temp_dir("cacheforeign");
  test::ScopedEnv e1("CLQ_CACHE_DIR", dir.c_str());
  test::ScopedEnv e2("CLQ_CACHE", nullptr);
  auto& c = test::ctx();
  // Earlier tests in this process may have memoized these kernels: go through the cache levels.
  c.set_kernel_memo(false);
  struct MemoBack {
    Context& c;
    ~MemoBack() { c.set_kernel_memo(true); }
  } memo_back{c};
  c.programs().clear_memory();
  c.kernel("moe/align.cl", "moe_align");
  std::string opts = c.base_options();
  if (const char* extra = std::getenv("CLQ_BUILD_OPTIONS"); extra && *extra) opts += std::string(" ") + extra;
  const std::string align = c.programs().disk_path(expanded_kernel_source("moe/align.cl"), opts);
  const std::string conv = c.programs().disk_path(expanded_kernel_source("convert/convert.cl"), opts);
  std::string forged = read_all(align);
  ASSERT_GT(forged.size(), 144u) << align;
  const std::string key = conv.substr(conv.size() - 6 - 64, 64);  // "<key>.clbin"
  forged.replace(8, 64, key);
  write_all(conv, forged);
  c.programs().clear_memory();
  const int rejected = c.programs().stats().disk_rejected;
  EXPECT_NO_THROW(c.kernel("convert/convert.cl", "decode_fp16"));
  EXPECT_EQ(c.programs().stats().disk_rejected, rejected + 1);
  EXPECT_NE(read_all(conv), forged) << "the foreign entry was not overwritten";
  c.programs().clear_memory();
}

// Context::record (cl_khr_command_buffer): a replay runs the launches with the arguments they had
// when recorded, even after the same kernel object got other arguments (ops share memoized
// kernels), over what the buffers hold at replay time; anything but a launch is refused.
TEST(Runtime, RecordedLaunchesReplayWithTheirOwnArguments) {
  auto& c = test::ctx();
  if (!c.command_buffers()) {
    try {
      c.record([] {});
      FAIL() << "record() without cl_khr_command_buffer";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kNotSupported);
    }
    GTEST_SKIP() << c.features().device_name << " offers no cl_khr_command_buffer";
  }
  const size_t n = 256, bytes = n * 16;
  cl::Buffer a = c.alloc(bytes), b = c.alloc(bytes), other = c.alloc(bytes);
  cl::Kernel k = c.kernel("bench/copy.cl", "bench_copy");
  set_args(k, a, b, cl_uint(n));
  auto rec = c.record([&] { launch(c, k, cl::NDRange(n), cl::NDRange(64), "copy a to b"); });
  ASSERT_EQ(rec->launches().size(), 1u);
  set_args(k, a, other, cl_uint(n));  // the recorded copy must still write b
  for (uint32_t round = 0; round < 3; ++round) {
    c.fill_u32(a, 0x1000u + round, bytes);
    c.fill_u32(b, 0u, bytes);
    c.fill_u32(other, 0u, bytes);
    rec->replay();
    uint32_t vb = 0, vo = 0;
    c.read(b, &vb, 4, bytes - 4);
    c.read(other, &vo, 4);
    EXPECT_EQ(vb, 0x1000u + round) << "round " << round;
    EXPECT_EQ(vo, 0u) << "round " << round;
  }
  auto refused = [&](const std::function<void()>& f) {
    try {
      c.record(f);
    } catch (const Error& e) {
      return e.status() == Status::kInvalidArgument;
    }
    return false;
  };
  uint32_t word = 0;
  EXPECT_TRUE(refused([&] { c.write(a, &word, 4); }));
  EXPECT_TRUE(refused([&] { c.read(a, &word, 4); }));
  EXPECT_TRUE(refused([&] { c.finish(); }));
  EXPECT_TRUE(refused([] {}));  // nothing launched
  EXPECT_FALSE(c.recording());
}
