// The capability table: rows are consistent, selection follows features and M, overrides are
// checked, probes report absent features without error, and the matrix has the promised cells.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "host/caps/caps.h"
#include "host/caps/report.h"
#include "host/ops/launcher.h"
#include "host/ops/w4a16/w4a16_config.h"
#include "runtime/context.h"
#include "runtime/kernel_sources.h"
#include "runtime/status.h"
#include "tests/test_util.h"

using namespace clq;

// Rows and launchers agree one to one: every implemented row has a launcher whose kernel files
// are embedded, every planned row has none, every launcher serves at least one row.
TEST(Caps, ImplementedRowsHaveLaunchersWithEmbeddedKernels) {
  auto names = embedded_kernel_names();
  for (auto& r : capability_table()) {
    const Launcher* l = find_launcher(r.op, r.variant);
    if (r.stage != VariantStage::kImplemented) {
      EXPECT_EQ(l, nullptr) << r.op << "/" << r.variant << " is planned but has a launcher";
      continue;
    }
    ASSERT_NE(l, nullptr) << r.op << "/" << r.variant << " has no launcher";
    ASSERT_FALSE(l->kernel_files().empty()) << r.op << "/" << r.variant;
    for (auto& f : l->kernel_files())
      EXPECT_NE(std::find(names.begin(), names.end(), f), names.end())
          << r.op << "/" << r.variant << " names missing kernel " << f;
  }
  for (auto* l : all_launchers()) {
    bool used = false;
    for (auto& op : l->ops())
      for (auto& r : capability_table()) used |= op == r.op && std::string(l->variant()) == r.variant;
    EXPECT_TRUE(used) << l->variant() << " launcher serves no table row";
  }
}

// Kernel files are named for their variants: kernels_cl/<family>/<variant>.cl.
TEST(Caps, MainKernelFileIsNamedForTheVariant) {
  for (auto* l : all_launchers()) {
    const std::string f = l->kernel_files().front();
    const std::string stem = f.substr(f.find('/') + 1, f.rfind('.') - f.find('/') - 1);
    if (std::string(l->variant()) == "portable" || std::string(l->variant()) == "emulated") continue;
    EXPECT_EQ(stem, l->variant()) << f;
  }
}

TEST(Caps, EveryImplementedVariantBuildsOnThisDeviceIfSupported) {
  auto& c = test::ctx();
  for (auto& op : table_ops())
    for (auto* r : supported_variants(op, c.features()))
      for (auto& f : find_launcher(r->op, r->variant)->kernel_files())
        EXPECT_NO_THROW(c.programs().get(f, c.base_options())) << r->op << "/" << r->variant << " " << f;
}

// The tensor-core launch shapes have one source of truth (host/ops/w4a16/w4a16_config.h): the
// kernel files' standalone #ifndef defaults must repeat the host structs' defaults.
TEST(Caps, KernelDefaultsMatchTheHostConfigs) {
  auto value = [](const std::string& file, const std::string& name) {
    const std::string text = kernel_file_text(file), key = "#define " + name + " ";
    const size_t at = text.find(key);
    if (at == std::string::npos) return -1;
    return std::atoi(text.c_str() + at + key.size());
  };
  const NvTiledConfig t;
  EXPECT_EQ(value("w4a16/nv_mma_tiled.cl", "TN"), t.tn);
  EXPECT_EQ(value("w4a16/nv_mma_tiled.cl", "WN"), t.wn);
  EXPECT_EQ(value("w4a16/nv_mma_tiled.cl", "MBW"), t.mbw);
  EXPECT_EQ(value("w4a16/nv_mma_tiled.cl", "WM"), t.wm);
  EXPECT_EQ(value("w4a16/nv_mma_tiled.cl", "STAGES"), t.stages);
  EXPECT_EQ(value("w4a16/nv_mma_tiled.cl", "GM"), t.gm);
  const NvSkinnyConfig k;
  EXPECT_EQ(value("w4a16/nv_mma_skinny.cl", "NT"), k.nt);
  EXPECT_EQ(value("w4a16/nv_mma_skinny.cl", "MB"), k.mb);
  EXPECT_EQ(value("w4a16/nv_mma_skinny.cl", "KW"), k.kw);
  EXPECT_EQ(value("w4a16/nv_mma_skinny.cl", "UNROLL"), k.unroll);
}

// An honest matrix: no device class whose cells only repeat another's.
TEST(Caps, NoSupportMatrixColumnRepeatsAnother) {
  const auto& cls = device_classes();
  for (size_t i = 0; i < cls.size(); ++i)
    for (size_t j = i + 1; j < cls.size(); ++j) {
      bool differ = false;
      for (auto& row : matrix_rows())
        differ |= matrix_cell(row.op, cls[i].features).text() != matrix_cell(row.op, cls[j].features).text();
      EXPECT_TRUE(differ) << cls[i].name << " repeats " << cls[j].name;
    }
  // Every feature bit gates at least one row.
  for (int b = 0; b < kFeatureCount; ++b) {
    bool gates = false;
    for (auto& r : capability_table()) gates |= (r.requires & (1u << b)) != 0;
    EXPECT_TRUE(gates) << feature_name(1u << b) << " gates no row";
  }
}

TEST(Caps, SelectionFollowsFeaturesAndSize) {
  DeviceFeatures plain;  // a device with nothing: generic portable paths
  EXPECT_STREQ(select_variant("convert", plain, 1).variant, "portable");
  EXPECT_STREQ(select_variant("moe_gemm", plain, 1).variant, "portable");  // nv_mma is planned: never selected
  EXPECT_THROW(select_variant("moe_gemm", plain, 1, "nv_mma"), Error);
  EXPECT_STREQ(select_variant("fp8_block_gemm", plain, 1).variant, "gemv");
  EXPECT_STREQ(select_variant("fp8_block_gemm", plain, 4096).variant, "tiled");
  EXPECT_STREQ(select_variant("w4a16_gemm", plain, 1).variant, "gemv");
  EXPECT_STREQ(select_variant("w4a16_gemm", plain, 4096).variant, "tiled");
  EXPECT_STREQ(select_variant("w4a16_gemm", plain, 1, "tiled").variant, "tiled");
  DeviceFeatures nv;  // a device whose mma.sync probe passed: tensor cores at every M
  nv.is_gpu = true;
  nv.nv_mma_f16 = true;
  nv.nv_cc_major = 9;
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 1).variant, "nv_mma_skinny");
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 16).variant, "nv_mma_skinny");
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 17).variant, "nv_mma_tiled");
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 33).variant, "nv_mma_tiled");
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 4096).variant, "nv_mma_tiled");
  EXPECT_STREQ(select_variant("fp8_block_gemm", nv, 4096).variant, "tiled");  // sm80: no e4m3 mma
  nv.nv_mma_e4m3 = true;
  EXPECT_STREQ(select_variant("fp8_block_gemm", nv, 1).variant, "gemv");
  EXPECT_STREQ(select_variant("fp8_block_gemm", nv, 8).variant, "nv_mma_e4m3");
  EXPECT_STREQ(select_variant("fp8_block_gemm", nv, 4096).variant, "nv_mma_e4m3");  // no wgmma probe
  nv.nv_wgmma = true;  // sm90 with the probe: wgmma from M=16, mma.sync below it
  EXPECT_STREQ(select_variant("fp8_block_gemm", nv, 15).variant, "nv_mma_e4m3");
  EXPECT_STREQ(select_variant("fp8_block_gemm", nv, 16).variant, "nv_wgmma_e4m3");
  EXPECT_STREQ(select_variant("fp8_tensor_gemm", nv, 4096).variant, "nv_wgmma_e4m3");
  EXPECT_STREQ(select_variant("w8a16_gemm", nv, 4096).variant, "tiled");  // wgmma needs e4m3 activations
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 127).variant, "nv_mma_tiled");  // W4A16 wgmma from M=128
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 128).variant, "nv_wgmma");
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 4096).variant, "nv_wgmma");
  EXPECT_STREQ(select_variant("w4a16_gemm", nv, 16).variant, "nv_mma_skinny");
  DeviceFeatures cpu;
  cpu.is_cpu = true;  // CPUs keep the register-tiled gemv at every M (bench/RESULTS.md)
  EXPECT_STREQ(select_variant("w4a16_gemm", cpu, 4096).variant, "gemv");
  EXPECT_EQ(supported_variants("w4a16_gemm", cpu).size(), 2u);
}

TEST(Caps, OverridesAreValidated) {
  DeviceFeatures plain;
  try {
    select_variant("w4a16_gemm", plain, 1, "bogus");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("gemv"), std::string::npos) << "lists the variants";
  }
  try {
    select_variant("w4a16_gemm", plain, 1, "nv_mma_tiled");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kNotSupported);
  }
  {
    // The removed nv_mma variant is a deprecated alias of nv_mma_tiled for one release.
    DeviceFeatures nv;
    nv.nv_mma_f16 = true;
    EXPECT_STREQ(select_variant("w4a16_gemm", nv, 1, "nv_mma").variant, "nv_mma_tiled");
  }
  {
    test::ScopedEnv env("CLQ_VARIANT", "w4a16_gemm=tiled");
    EXPECT_STREQ(select_variant("w4a16_gemm", plain, 1).variant, "tiled");
  }
  {
    test::ScopedEnv env("CLQ_VARIANT", "tiled");  // single name: ops without it are unaffected
    EXPECT_STREQ(select_variant("convert", plain, 1).variant, "portable");
  }
  // Malformed values are errors naming the item, for every op (issue 16), not silently nothing.
  for (const char* bad : {"===,,,", "w4a16_gemm=tiled,", ",w4a16_gemm=tiled", "w4a16_gem=tiled", "w4a16_gemm=",
                          "w4a16_gemm=tiled=x", "w4a16_gemm=bogus", "bogus", "tiled,gemv"}) {
    test::ScopedEnv env("CLQ_VARIANT", bad);
    try {
      check_variant_env();
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find(std::string("CLQ_VARIANT='") + bad + "'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(select_variant("convert", plain, 1), Error) << bad;
  }
  {
    test::ScopedEnv env("CLQ_VARIANT", "w4a16_gemm=tiled,fp8_block_gemm=gemv");
    EXPECT_NO_THROW(check_variant_env());
  }
}

TEST(Caps, ProbesOnThisDevice) {
  const auto& f = test::ctx().features();
  if (f.nv_cc_major < 0) {
    EXPECT_FALSE(f.nv_mma_f16);
    EXPECT_FALSE(f.nv_mma_e4m3);
    EXPECT_EQ(feature_mask(f) & (kFeatNvMmaF16 | kFeatNvMmaE4m3 | kFeatNvWgmma), 0u);
  } else {
    // NVIDIA: sm80+ must pass the f16 probe, sm89+ the e4m3 probe (GPU.md: both pass on sm90).
    if (f.nv_sm() >= 80) {
      EXPECT_TRUE(f.nv_mma_f16) << f.probe_notes;
    }
    if (f.nv_sm() >= 89) {
      EXPECT_TRUE(f.nv_mma_e4m3) << f.probe_notes;
    }
    // sm90: the PTX patch path reaches wgmma and 200 KiB of shared memory (GPU.md's recipe).
    if (f.nv_sm() >= 90 && wgmma_probe_enabled()) {
      EXPECT_TRUE(f.nv_wgmma) << f.probe_notes;
    }
  }
}

TEST(Caps, SupportMatrixCells) {
  auto col = [](const char* name) {
    for (auto& c : device_classes())
      if (std::string(c.name) == name) return c.features;
    ADD_FAILURE() << "no column " << name;
    return 0u;
  };
  MatrixCell conv = matrix_cell("convert", col("portable"));
  EXPECT_EQ(conv.letter, 'S');
  EXPECT_FALSE(conv.planned);
  MatrixCell w4_pocl = matrix_cell("w4a16_gemm", col("portable"));
  EXPECT_EQ(w4_pocl.letter, 'S');
  EXPECT_FALSE(w4_pocl.planned);
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("portable")).letter, 'E');
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("NV-sm80")).letter, 'E');
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("NV-sm89+")).letter, 'S');
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("NV-sm89+")).letter, 'S');
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("NV-sm89+")).text(), "S");  // e4m3 mma.sync
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("NV-sm80")).text(), "E");  // no e4m3 tensor cores
  EXPECT_EQ(matrix_cell("w8a16_gemm", col("NV-sm89+")).text(), "E/S*");   // emulated now, mma planned
  EXPECT_EQ(matrix_cell("fp8_block_gemm", col("portable")).text(), "E");
  EXPECT_EQ(matrix_cell("moe_gemm", col("portable")).text(), "S");
  EXPECT_EQ(matrix_cell("moe_gemm_fp8", col("NV-sm89+")).text(), "E/S*");

  std::ostringstream out;
  print_caps(out, test::ctx());
  for (const char* s : {"NV-sm80", "NV-sm89+", "portable", "w4a16", "this device"})
    EXPECT_NE(out.str().find(s), std::string::npos) << s;
  auto j = caps_json(test::ctx());
  EXPECT_EQ(j["support_matrix"]["rows"].size(), matrix_rows().size());
}
