// The w4a16_gemm launchers, one per implemented variant of its capability-table rows.
#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

const W4A16Launcher& w4a16_gemv_launcher();
const W4A16Launcher& w4a16_tiled_launcher();
const W4A16Launcher& w4a16_nv_mma_skinny_launcher();
const W4A16Launcher& w4a16_nv_mma_tiled_launcher();
const W4A16Launcher& w4a16_nv_wgmma_launcher();

GatherX prepare_gather_x(Context& c, W4A16DeviceLayer& L, const W4A16Call& a, bool nibble_scaled) {
  oputil::grow_scratch(c, L.xp, L.xp_bytes, size_t(a.M) * size_t(L.Kp) * 4);
  oputil::grow_scratch(c, L.xw, L.xw_bytes, size_t(a.M) * size_t(L.Kp / 8) * 4);
  const std::string defs = oputil::io_defines(a.xt, a.yt) + (nibble_scaled ? " -DNIBBLE_SCALED=1" : "");
  return {c.kernel("w4a16/gather.cl", "w4a16_gather_x", defs)};
}

void GatherX::enqueue(Context& c, OpEvents& ev, const W4A16DeviceLayer& L, const W4A16Call& a) const {
  cl::Kernel k = kernel;
  set_args(k, *a.x, L.perm, L.xp, L.xw, cl_int(a.M), cl_int(L.K), cl_int(L.Kp));
  oputil::enqueue(c, ev, k, cl::NDRange(oputil::round_up(size_t(L.Kp / 8), 64), size_t(a.M)), cl::NDRange(64, 1),
                  "w4a16_gather_x");
}

const std::vector<const W4A16Launcher*>& w4a16_launchers() {
  static const std::vector<const W4A16Launcher*> all = {&w4a16_gemv_launcher(), &w4a16_tiled_launcher(),
                                                        &w4a16_nv_mma_skinny_launcher(),
                                                        &w4a16_nv_mma_tiled_launcher(),
                                                        &w4a16_nv_wgmma_launcher()};
  return all;
}

const W4A16Launcher* w4a16_launcher(const std::string& variant) {
  return find_variant(w4a16_launchers(), variant);
}

}  // namespace clq
