// w4a16_gemm/tiled: 64x64 output tiles per work-group of 16x16, weights dequantized once per
// tile into local memory (kernels_cl/w4a16/tiled.cl); activations gathered into fp32 first.
#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

namespace {

class Tiled final : public W4A16Launcher {
 public:
  Tiled() : W4A16Launcher("tiled", {"w4a16/tiled.cl", "w4a16/gather.cl"}) {}

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    return enqueue_portable_tiled(c, L, a, "w4a16/tiled.cl", "w4a16_gemm_tiled");
  }
};

}  // namespace

OpEvents enqueue_portable_tiled(Context& c, W4A16DeviceLayer& L, const W4A16Call& a, const char* file,
                                const char* entry) {
  const int64_t M = a.M;
  const GatherX gather = prepare_gather_x(c, L, a, /*nibble_scaled=*/false);
  cl::Kernel main_k = c.kernel(file, entry, oputil::io_defines(a.xt, a.yt));
  OpEvents ev;
  gather.enqueue(c, ev, L, a);
  set_args(main_k, L.qw, L.scales, L.zeros, L.wgroup, L.xp, *a.y, cl_int(M), cl_int(L.N), cl_int(L.g.Np),
           cl_int(L.g.block_n), cl_int(L.Kp));
  oputil::enqueue(c, ev, main_k, cl::NDRange(size_t((L.N + 63) / 64) * 16, size_t((M + 63) / 64) * 16),
                  cl::NDRange(16, 16), std::string(entry) + " (M=" + std::to_string(M) + ")");
  return ev;
}

const W4A16Launcher& w4a16_tiled_launcher() {
  static const Tiled l;
  return l;
}

}  // namespace clq
