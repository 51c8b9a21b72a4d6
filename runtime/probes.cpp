// Compile-and-run probes. A probe that fails to build, to run, or to give the known answer marks
// its feature absent; the reason goes to probe_notes, never to an error. Results are cached on
// disk per (device, driver, platform, probe sources) so a second process skips the work.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "runtime/context.h"
#include "runtime/kernel_sources.h"
#include "runtime/sha256.h"
#include "runtime/status.h"

namespace clq {

namespace {
// Small integers only, so fp16 and e4m3 represent them and every product sum is exact.
const int kVals[5] = {-2, -1, 0, 1, 2};
const uint16_t kHalf[5] = {0xC000, 0xBC00, 0x0000, 0x3C00, 0x4000};
const uint8_t kE4m3[5] = {0xC0, 0xB8, 0x00, 0x38, 0x40};

// Runs one mma probe: A is 16 x kk, B is kk x 8 (stored transposed), D = A B exactly.
template <typename Code>
bool run_mma_probe(Context& c, const std::string& file, const std::string& kernel_name, int kk, const Code* codes,
                   std::string& note) {
  try {
    std::vector<Code> a(16 * kk), bt(8 * kk);
    std::vector<int> av(16 * kk), bv(8 * kk);
    for (int i = 0; i < 16 * kk; ++i) {
      int s = (i * 7 + 3) % 5;
      av[i] = kVals[s];
      a[i] = codes[s];
    }
    for (int i = 0; i < 8 * kk; ++i) {
      int s = (i * 3 + 1) % 5;
      bv[i] = kVals[s];
      bt[i] = codes[s];
    }
    cl::Buffer da = c.alloc(a.size() * sizeof(Code)), db = c.alloc(bt.size() * sizeof(Code)), dd = c.alloc(16 * 8 * 4);
    c.write(da, a.data(), a.size() * sizeof(Code));
    c.write(db, bt.data(), bt.size() * sizeof(Code));
    c.fill_u32(dd, 0x7fc00001u, 16 * 8 * 4);
    cl::Kernel k = c.kernel(file, kernel_name);
    set_args(k, da, db, dd);
    launch(c, k, cl::NDRange(32), cl::NDRange(32), kernel_name);
    std::vector<float> d(16 * 8);
    c.read(dd, d.data(), d.size() * 4);
    for (int i = 0; i < 16; ++i)
      for (int n = 0; n < 8; ++n) {
        int want = 0;
        for (int k2 = 0; k2 < kk; ++k2) want += av[i * kk + k2] * bv[n * kk + k2];
        if (d[i * 8 + n] != float(want)) {
          note += kernel_name + ": wrong answer at D[" + std::to_string(i) + "][" + std::to_string(n) +
                  "] = " + std::to_string(d[i * 8 + n]) + ", expected " + std::to_string(want) + "; ";
          return false;
        }
      }
    return true;
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
    note += kernel_name + ": " + msg + "; ";
    return false;
  }
}

// fp16 bits of v2 / 2 for v2 in [-4, 4]: halves, so every product and sum below is exact.
uint16_t small_half(int v2) {
  static const uint16_t kBits[9] = {0xC000, 0xBE00, 0xBC00, 0xB800, 0x0000, 0x3800, 0x3C00, 0x3E00, 0x4000};
  return kBits[v2 + 4];
}

}  // namespace

bool wgmma_probe_enabled() {
  // On by default (it gates the nv_wgmma_e4m3 rows); CLQ_PROBE_WGMMA=0 keeps a device on sm80 paths.
  const char* e = std::getenv("CLQ_PROBE_WGMMA");
  return !(e && std::string(e) == "0");
}

namespace {

// The sm_90a rewrite the wgmma probe needs (kernels_cl/probe/nv_wgmma_f16.cl names the markers).
PtxPatch wgmma_probe_patch() {
  PtxPatch p;
  p.target = "sm_90a";
  p.markers = {
      {"CLQ_WG_FENCE", "fence.proxy.async.shared::cta;\nwgmma.fence.sync.aligned;"},
      {"CLQ_WG_MMA", "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {{0}, {1}, {2}, {3}}, {{4}, {5}, {6}, {7}}, {8}, 0, 1, 1, 0;"},
      {"CLQ_WG_COMMIT", "wgmma.commit_group.sync.aligned;"},
      {"CLQ_WG_WAIT", "wgmma.wait_group.sync.aligned 0;"},
      {"CLQ_BIG_SMEM",
       "{\n.reg .u32 %clq_a;\nmov.u32 %clq_a, clq_probe_smem;\nadd.u32 %clq_a, %clq_a, {2};\n"
       "st.shared.u32 [%clq_a+204288], {1};\nld.shared.u32 {0}, [%clq_a+204288];\n}"},
  };
  p.module_decls = {".shared .align 128 .b8 clq_probe_smem[204800];"};
  return p;
}

// wgmma m64n8k16 against the host, plus a word per work-item through 200 KiB of .shared.
bool run_wgmma_probe(Context& c, std::string& note) {
  try {
    std::vector<uint16_t> a(64 * 16), b(8 * 16);
    std::vector<int> av(64 * 16), bv(8 * 16);  // twice the value: halves are exact
    for (int i = 0; i < 64 * 16; ++i) {
      av[i] = (i * 7 + 3) % 9 - 4;
      a[i] = small_half(av[i]);
    }
    for (int i = 0; i < 8 * 16; ++i) {
      bv[i] = (i * 5 + 1) % 9 - 4;
      b[i] = small_half(bv[i]);
    }
    cl::Buffer da = c.alloc(a.size() * 2), db = c.alloc(b.size() * 2), dd = c.alloc(64 * 8 * 4), ds = c.alloc(128 * 4);
    c.write(da, a.data(), a.size() * 2);
    c.write(db, b.data(), b.size() * 2);
    c.fill_u32(dd, 0x7fc00001u, 64 * 8 * 4);
    c.fill_u32(ds, 0u, 128 * 4);
    cl::Kernel k = c.kernel_patched("probe/nv_wgmma_f16.cl", "probe_wgmma_f16", "", wgmma_probe_patch());
    set_args(k, da, db, dd, ds);
    launch(c, k, cl::NDRange(128), cl::NDRange(128), "probe_wgmma_f16");
    std::vector<float> d(64 * 8);
    std::vector<uint32_t> sm(128);
    c.read(dd, d.data(), d.size() * 4);
    c.read(ds, sm.data(), sm.size() * 4);
    for (int m = 0; m < 64; ++m)
      for (int n = 0; n < 8; ++n) {
        double want = 0;
        for (int kk = 0; kk < 16; ++kk) want += (av[m * 16 + kk] / 2.0) * (bv[n * 16 + kk] / 2.0);
        if (double(d[m * 8 + n]) != want) {
          note += "probe_wgmma_f16: wrong answer at D[" + std::to_string(m) + "][" + std::to_string(n) +
                  "] = " + std::to_string(d[m * 8 + n]) + ", expected " + std::to_string(want) + "; ";
          return false;
        }
      }
    for (uint32_t t = 0; t < 128; ++t)
      if (sm[t] != (0xC0DE0000u | t)) {
        note += "probe_wgmma_f16: the 200 KiB .shared round trip read " + std::to_string(sm[t]) + " for work-item " +
                std::to_string(t) + "; ";
        return false;
      }
    return true;
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
    note += std::string("probe_wgmma_f16: ") + msg + "; ";
    return false;
  }
}

std::string probe_cache_path(const DeviceFeatures& f) {
  const std::string wgmma = wgmma_probe_enabled() ? "wgmma-on" : "wgmma-off";
  std::string dir = cache_dir();
  if (dir.empty()) return "";
  Sha256 h;
  for (const std::string& s :
       {std::string("probe/1"), f.device_name, f.driver_version, f.platform_version, f.device_version,
        expanded_kernel_source("probe/nv_mma_f16.cl"), expanded_kernel_source("probe/nv_mma_e4m3.cl"),
        expanded_kernel_source("probe/nv_wgmma_f16.cl"), wgmma_probe_patch().key(), wgmma}) {
    h.update(s);
    h.update("\0", 1);
  }
  return dir + "/probe-" + h.hex() + ".txt";
}
}  // namespace

void probe_features(Context& c, DeviceFeatures& f) {
  f.nv_mma_f16 = f.nv_mma_e4m3 = f.nv_wgmma = false;
  if (f.nv_cc_major < 0) {
    f.probe_notes = "inline PTX probes not run: the device has no cl_nv_device_attribute_query";
    return;
  }
  std::string path = probe_cache_path(f);
  if (!path.empty()) {
    std::ifstream in(path);
    int v16 = -1, v8 = -1, vwg = -1;
    std::string line, notes;
    while (std::getline(in, line)) {
      if (line.rfind("nv_mma_f16=", 0) == 0)
        v16 = line[11] == '1';
      else if (line.rfind("nv_mma_e4m3=", 0) == 0)
        v8 = line[12] == '1';
      else if (line.rfind("nv_wgmma=", 0) == 0)
        vwg = line[9] == '1';
      else if (line.rfind("notes=", 0) == 0)
        notes = line.substr(6);
    }
    if (v16 >= 0 && v8 >= 0 && vwg >= 0) {  // a partial or foreign file falls through to a fresh probe
      f.nv_mma_f16 = v16;
      f.nv_mma_e4m3 = v8;
      f.nv_wgmma = vwg;
      f.probe_notes = notes;
      return;
    }
  }
  std::string note;
  f.nv_mma_f16 = run_mma_probe<uint16_t>(c, "probe/nv_mma_f16.cl", "probe_mma_f16", 16, kHalf, note);
  f.nv_mma_e4m3 = run_mma_probe<uint8_t>(c, "probe/nv_mma_e4m3.cl", "probe_mma_e4m3", 32, kE4m3, note);
  // wgmma exists from sm_90 (sm_90a instructions): elsewhere the rewritten PTX would not load.
  // Opt-in until the probe has passed on an H200 (it was written while no device machine was
  // lent): a driver that crashed on the rewritten PTX would take every process with it.
  if (!wgmma_probe_enabled())
    note += "wgmma probe not run (CLQ_PROBE_WGMMA=0); ";
  else if (f.nv_cc_major >= 9 && f.nv_mma_f16)
    f.nv_wgmma = run_wgmma_probe(c, note);
  else
    note += "wgmma probe not run: needs compute capability 9.x and the mma.sync f16 probe; ";
  for (char& ch : note)
    if (ch == '\n') ch = ' ';
  f.probe_notes = note;
  if (!path.empty()) {
    std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp);
      out << "nv_mma_f16=" << int(f.nv_mma_f16) << "\nnv_mma_e4m3=" << int(f.nv_mma_e4m3)
          << "\nnv_wgmma=" << int(f.nv_wgmma) << "\nnotes=" << note << "\n";
    }
    std::rename(tmp.c_str(), path.c_str());
  }
}

}  // namespace clq
