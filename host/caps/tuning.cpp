#include "host/caps/tuning.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "runtime/status.h"

namespace clq {

namespace {
const GemvTuning kGemv[] = {
    // A CPU whose compiler maps a work-item's float16 onto vector registers (PoCL: native float
    // width 16 or 8). Mesa's llvmpipe reports width 1: it runs 8 work-items in the lanes of one
    // register, so 16 columns x 8 rows per work-item become thousands of vector FMAs per loop
    // step, and LLVM's instruction selection then takes minutes per kernel (the MoE "hang" of
    // issue 16). Such a CPU takes the default row.
    {"cpu", [](const DeviceFeatures& f) { return f.is_cpu && f.native_float_width >= 8; }, 16, 16, 4, 4096, 8, 8},
    {"gpu", [](const DeviceFeatures& f) { return f.is_gpu; }, 4, 0, 1024, 0, 64, 4},
    {"default", [](const DeviceFeatures&) { return true; }, 4, 0, 256, 0, 64, 4},
};
}  // namespace

GemvLayout gemv_layout(const GemvTuning& t, int64_t N) {
  GemvLayout l;
  l.cols = t.gemv_cols;
  l.max_rows = t.gemv_max_rows;
  l.Np = (N + l.cols - 1) / l.cols * l.cols;
  l.block_n = t.block_n > 0 ? t.block_n : l.Np;
  return l;
}

GemvGeometry gemv_geometry(const DeviceFeatures& f, int64_t N) {
  const GemvTuning& t = gemv_tuning(f);
  const GemvLayout lay = gemv_layout(t, N);
  return {lay.cols, lay.max_rows, lay.Np, lay.block_n, t.gemv_local, t.items_per_cu, t.max_split_floats};
}

const GemvTuning& gemv_tuning(const DeviceFeatures& f) {
  // CLQ_W4A16_TUNING is the variable's name before the rows served FP8 and MoE too (deprecated,
  // CHANGELOG); CLQ_GEMV_TUNING wins when both are set.
  const char* var = "CLQ_GEMV_TUNING";
  const char* name = std::getenv(var);
  if (!name || !*name) {
    var = "CLQ_W4A16_TUNING";
    name = std::getenv(var);
  }
  if (name && *name) {
    for (const auto& t : kGemv)
      if (std::strcmp(t.name, name) == 0) return t;
    fail(Status::kInvalidArgument, std::string(var) + "='" + name + "' names no tuning row (cpu, gpu, default)");
  }
  for (const auto& t : kGemv)
    if (t.applies(f)) return t;
  return kGemv[2];  // "default" always applies; unreachable
}

}  // namespace clq
