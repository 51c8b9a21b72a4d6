// fp8_block_gemm/nv_mma_e4m3 (sm89+): mma.sync m16n8k32 e4m3 on the codes themselves, two-level
// fp32 accumulation (kernels_cl/fp8/nv_mma_e4m3.cl). Asks the quantizer for e4m3 codes in rows
// padded to whole 128-blocks (the A operand); split-K through fp8_splitk_reduce.
#include <algorithm>

#include "host/ops/fp8/fp8_launcher.h"
#include "host/ops/op_util.h"

namespace clq {

int fp8_mma_splits(const Fp8DeviceLayer& L, const DeviceFeatures& f, int64_t M) {
  // ~32 warps per compute unit (w4a16's rule); splits are whole 128-blocks.
  const int64_t cols = M >= 64 ? 32 : 64, rows = M >= 64 ? 64 : 16;
  const int64_t warps = ((L.g.Np + cols - 1) / cols) * ((M + rows - 1) / rows);
  const int64_t target = int64_t(f.compute_units) * 32;
  return int(std::max<int64_t>(1, std::min<int64_t>((target + warps - 1) / warps, L.Kb)));
}

namespace {

class NvMmaE4m3 final : public Fp8Launcher {
 public:
  NvMmaE4m3() : Fp8Launcher("nv_mma_e4m3", {"fp8/nv_mma_e4m3.cl", "fp8/quant.cl", "fp8/gemv.cl"}) {}

  Check can_implement(const Fp8DeviceLayer& L, const Fp8Call& a, const DeviceFeatures& f) const override {
    if (a.act == Fp8Act::kNone)
      return Check::refuse(Status::kNotSupported,
                           "nv_mma_e4m3 multiplies e4m3 codes: it needs quantized activations, not weight-only (w8a16)");
    return Check::pass();
  }

  OpEvents enqueue(Context& c, Fp8DeviceLayer& L, Fp8Quantizer& quant, const Fp8Call& a) const override {
    const int64_t M = a.M;
    const int splits = fp8_whole_splits(L, a.splits > 0 ? a.splits : fp8_mma_splits(L, c.features(), M));
    const int64_t bps = (L.Kb + splits - 1) / splits;
    oputil::grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    cl::Kernel main_k = c.kernel("fp8/nv_mma_e4m3.cl", "fp8_block_gemm_nv_mma",
                                 defs + " -DMT=" + std::to_string(M >= 64 ? 4 : 1) +
                                     " -DNF=" + std::to_string(M >= 64 ? 4 : 8));
    cl::Kernel reduce;
    if (splits > 1) reduce = c.kernel("fp8/gemv.cl", "fp8_splitk_reduce", defs);
    OpEvents ev = quant.run(*a.x, a.xt, M, L.K, a.act, a.input_scale, /*padded_codes=*/true);
    set_args(main_k, L.qw, L.sw, quant.codes(), quant.scales(), L.part, *a.y, cl_int(M), cl_int(L.N), cl_int(L.g.Np),
             cl_int(L.g.block_n), cl_int(L.Kp), cl_int(bps), cl_int(splits == 1));
    // 4 warps x NF*8 columns x 16*MT rows per work-group (kernels_cl/fp8/nv_mma_e4m3.cl).
    const int64_t wg_cols = M >= 64 ? 128 : 256, wg_rows = M >= 64 ? 64 : 16;
    const std::string what =
        "fp8_block_gemm_nv_mma (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) + ")";
    oputil::enqueue(c, ev, main_k,
                  cl::NDRange(size_t((L.g.Np + wg_cols - 1) / wg_cols) * 128, size_t(splits),
                              size_t((M + wg_rows - 1) / wg_rows)),
                  cl::NDRange(128, 1, 1), what);
    if (splits > 1)
      oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, splits, "fp8_splitk_reduce");
    return ev;
  }
};

}  // namespace

const Fp8Launcher& fp8_nv_mma_e4m3_launcher() {
  static const NvMmaE4m3 l;
  return l;
}

}  // namespace clq
