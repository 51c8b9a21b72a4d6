// fp8_block_gemm/gemv (and the per-tensor and w8a16 rows): register tiles over the portable
// layout, e4m3 decoded by bit placement, two-level fp32 accumulation per 128-wide K block,
// split-K with a reduce pass (kernels_cl/fp8/gemv.cl). Reads the quantizer's fp32 codes.
#include <algorithm>
#include <cstdlib>

#include "host/formats/fp8.h"
#include "host/ops/fp8/fp8_launcher.h"
#include "host/ops/op_util.h"

namespace clq {

int fp8_gemv_splits(const Fp8DeviceLayer& L, const DeviceFeatures& f, int64_t M) {
  const int rows = oputil::gemv_rows(M, L.g.rows_max);
  const int64_t items = (L.g.Np / L.g.cols) * ((M + rows - 1) / rows);
  const int64_t target = int64_t(f.compute_units) * L.g.items_per_cu;
  int64_t splits = std::max<int64_t>(1, std::min<int64_t>((target + items - 1) / items, L.Kb));
  if (L.g.max_split_floats > 0) {
    const int64_t max_blocks = std::max<int64_t>(1, L.g.max_split_floats / (kFp8Block * rows));
    splits = std::max<int64_t>(splits, (L.Kb + max_blocks - 1) / max_blocks);
  }
  splits = std::min<int64_t>(splits, L.Kb);
  const int64_t bps = (L.Kb + splits - 1) / splits;
  return int((L.Kb + bps - 1) / bps);
}

namespace {

class Gemv final : public Fp8Launcher {
 public:
  Gemv() : Fp8Launcher("gemv", {"fp8/gemv.cl", "fp8/quant.cl"}) {}

  OpEvents enqueue(Context& c, Fp8DeviceLayer& L, Fp8Quantizer& quant, const Fp8Call& a) const override {
    const int64_t M = a.M;
    const int splits = fp8_whole_splits(L, a.splits > 0 ? a.splits : fp8_gemv_splits(L, c.features(), M));
    const int64_t bps = (L.Kb + splits - 1) / splits;
    const int rows = oputil::gemv_rows(M, L.g.rows_max);
    oputil::grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    const std::string opts = oputil::io_defines(a.xt, a.yt) + " -DGEMV_M=" + std::to_string(rows) +
                             " -DVEC_COLS=" + std::to_string(L.g.cols) + oputil::fp8_decode_define(c.features());
    cl::Kernel main_k = c.kernel("fp8/gemv.cl", "fp8_block_gemv", opts);
    cl::Kernel reduce;
    if (splits > 1) reduce = c.kernel("fp8/gemv.cl", "fp8_splitk_reduce", opts);
    OpEvents ev = quant.run(*a.x, a.xt, M, L.K, a.act, a.input_scale, /*padded_codes=*/false);
    set_args(main_k, L.qw, L.sw, quant.xq(), quant.scales(), L.part, *a.y, cl_int(M), cl_int(L.N), cl_int(L.g.Np),
             cl_int(L.g.block_n), cl_int(L.Kp), cl_int(bps), cl_int(splits == 1));
    const size_t local = size_t(L.g.gemv_local);
    const std::string what = "fp8_block_gemv (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) + ")";
    oputil::enqueue(c, ev, main_k,
                  cl::NDRange(oputil::round_up(size_t(L.g.Np / L.g.cols), local), size_t(splits),
                              size_t((M + rows - 1) / rows)),
                  cl::NDRange(local, 1, 1), what);
    if (splits > 1)
      oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, splits, "fp8_splitk_reduce");
    return ev;
  }
};

}  // namespace

const Fp8Launcher& fp8_gemv_launcher() {
  static const Gemv l;
  return l;
}

}  // namespace clq
