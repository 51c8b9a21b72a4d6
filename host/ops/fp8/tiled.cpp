// fp8_block_gemm/tiled: local-memory tiles, each weight decoded once per tile
// (kernels_cl/fp8/tiled.cl). Reads the quantizer's fp32 codes.
#include "host/ops/fp8/fp8_launcher.h"
#include "host/ops/op_util.h"

namespace clq {

namespace {

class Tiled final : public Fp8Launcher {
 public:
  Tiled() : Fp8Launcher("tiled", {"fp8/tiled.cl", "fp8/quant.cl"}) {}

  OpEvents enqueue(Context& c, Fp8DeviceLayer& L, Fp8Quantizer& quant, const Fp8Call& a) const override {
    const int64_t M = a.M;
    cl::Kernel main_k = c.kernel("fp8/tiled.cl", "fp8_block_gemm_tiled", oputil::io_defines(a.xt, a.yt));
    OpEvents ev = quant.run(*a.x, a.xt, M, L.K, a.act, a.input_scale, /*padded_codes=*/false);
    set_args(main_k, L.qw, L.sw, quant.xq(), quant.scales(), *a.y, cl_int(M), cl_int(L.N), cl_int(L.g.Np),
             cl_int(L.g.block_n), cl_int(L.Kp));
    const std::string what = "fp8_block_gemm_tiled (M=" + std::to_string(M) + ")";
    oputil::enqueue(c, ev, main_k, cl::NDRange(size_t((L.N + 63) / 64) * 16, size_t((M + 63) / 64) * 16),
                  cl::NDRange(16, 16), what);
    return ev;
  }
};

}  // namespace

const Fp8Launcher& fp8_tiled_launcher() {
  static const Tiled l;
  return l;
}

}  // namespace clq
