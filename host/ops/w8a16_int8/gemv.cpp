// w8a16_int8_gemm/gemv: register tiles of GEMV_M rows x VEC_COLS columns per work-item over the
// int8 layout, split-K across work-groups (kernels_cl/w8a16_int8/gemv.cl). The int4 gemv's
// activation gather, split heuristic and split-K reduce serve unchanged: splits are counted in
// 8-row units, two int8 words each.
#include "host/ops/op_util.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"

namespace clq {

namespace {

class Gemv final : public W8A16Int8Launcher {
 public:
  Gemv() : W8A16Int8Launcher("gemv", {"w8a16_int8/gemv.cl", "w4a16/gather.cl", "w4a16/gemv.cl"}) {}

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    const int64_t M = a.M, units = L.Kp / 8;
    const int splits = w4a16_gemv_splits(L, c.features(), M, a.opt.splits);
    const int64_t wps = 2 * ((units + splits - 1) / splits);
    const int rows = oputil::gemv_rows(M, L.g.rows_max);
    const GatherX gather = prepare_gather_x(c, L, a, /*nibble_scaled=*/false);
    oputil::grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    const std::string kdefs = oputil::io_defines(a.xt, a.yt) + " -DGEMV_M=" + std::to_string(rows) +
                              " -DVEC_COLS=" + std::to_string(L.g.cols);
    cl::Kernel main_k = c.kernel("w8a16_int8/gemv.cl", "w8a16_int8_gemv", kdefs);
    cl::Kernel reduce;
    if (splits > 1) reduce = c.kernel("w4a16/gemv.cl", "w4a16_splitk_reduce", kdefs);
    OpEvents ev;
    gather.enqueue(c, ev, L, a);
    set_args(main_k, L.qw, L.scales, L.zeros, L.gstart, L.wgroup, L.xp, L.part, *a.y, cl_int(M), cl_int(L.N),
             cl_int(L.g.Np), cl_int(L.g.block_n), cl_int(L.Kp), cl_int(wps), cl_int(splits == 1));
    const size_t local = size_t(L.g.gemv_local);
    oputil::enqueue(c, ev, main_k,
                    cl::NDRange(oputil::round_up(size_t(L.g.Np / L.g.cols), local), size_t(splits),
                                size_t((M + rows - 1) / rows)),
                    cl::NDRange(local, 1, 1),
                    "w8a16_int8_gemv (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) + ")");
    if (splits > 1) oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, splits, "w4a16_splitk_reduce");
    return ev;
  }
};

}  // namespace

const W4A16Launcher& w8a16_int8_gemv_launcher() {
  static const Gemv l;
  return l;
}

}  // namespace clq
