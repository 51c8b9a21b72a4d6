// w4a16_gemm/gemv: register tiles of GEMV_M rows x VEC_COLS columns per work-item over the
// portable layout, split-K across work-groups with a reduce pass (kernels_cl/w4a16/gemv.cl).
// Activations are first gathered into nibble-scaled fp32 in the packed row order (act-order).
#include <algorithm>

#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

using oputil::gemv_rows;
using oputil::grow_scratch;
using oputil::io_defines;
using oputil::round_up;

int w4a16_gemv_splits(const W4A16DeviceLayer& L, const DeviceFeatures& f, int64_t M, int requested) {
  const int64_t words = L.Kp / 8;
  int64_t splits = requested;
  if (splits <= 0) {
    // Enough work-items in flight to cover memory latency on a GPU; a CPU runs a work-group per
    // core and needs none.
    const int rows = gemv_rows(M, L.g.rows_max);
    const int64_t items = (L.g.Np / L.g.cols) * ((M + rows - 1) / rows);
    const int64_t target = int64_t(f.compute_units) * L.g.items_per_cu;
    splits = std::max<int64_t>(1, std::min<int64_t>((target + items - 1) / items, words / 8));
    if (L.g.max_split_floats > 0) {
      const int64_t max_words = std::max<int64_t>(8, L.g.max_split_floats / (8 * rows));
      splits = std::max<int64_t>(splits, (words + max_words - 1) / max_words);
    }
  }
  splits = std::min<int64_t>(std::max<int64_t>(splits, 1), words);
  const int64_t wps = (words + splits - 1) / splits;
  return int((words + wps - 1) / wps);
}

namespace {

class Gemv final : public W4A16Launcher {
 public:
  Gemv() : W4A16Launcher("gemv", {"w4a16/gemv.cl", "w4a16/gather.cl"}) {}

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    const int64_t M = a.M, words = L.Kp / 8;
    const int splits = w4a16_gemv_splits(L, c.features(), M, a.opt.splits);
    const int64_t wps = (words + splits - 1) / splits;
    const int rows = gemv_rows(M, L.g.rows_max);
    const GatherX gather = prepare_gather_x(c, L, a, /*nibble_scaled=*/true);
    grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    const std::string defs = io_defines(a.xt, a.yt);
    const std::string kdefs = defs + " -DGEMV_M=" + std::to_string(rows) + " -DVEC_COLS=" + std::to_string(L.g.cols);
    cl::Kernel main_k = c.kernel("w4a16/gemv.cl", "w4a16_gemv", kdefs);
    OpEvents ev;
    gather.enqueue(c, ev, L, a);
    set_args(main_k, L.qw, L.scales, L.zeros, L.gstart, L.wgroup, L.xp, L.xw, L.part, *a.y, cl_int(M), cl_int(L.N),
             cl_int(L.g.Np), cl_int(L.g.block_n), cl_int(L.Kp), cl_int(wps), cl_int(splits == 1));
    const size_t local = size_t(L.g.gemv_local);
    const std::string what = "w4a16_gemv (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) + ")";
    oputil::enqueue(c, ev, main_k,
                  cl::NDRange(round_up(size_t(L.g.Np / L.g.cols), local), size_t(splits), size_t((M + rows - 1) / rows)),
                  cl::NDRange(local, 1, 1), what);
    if (splits > 1) {
      cl::Kernel reduce = c.kernel("w4a16/gemv.cl", "w4a16_splitk_reduce", kdefs);
      oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, splits, "w4a16_splitk_reduce");
    }
    return ev;
  }
};

}  // namespace

const W4A16Launcher& w4a16_gemv_launcher() {
  static const Gemv l;
  return l;
}

}  // namespace clq
