// w4a16_gemm/tiled: 64x64 output tiles per work-group of 16x16, weights dequantized once per
// tile into local memory (kernels_cl/w4a16/tiled.cl); activations gathered into fp32 first.
#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

namespace {

class Tiled final : public W4A16Launcher {
 public:
  const char* variant() const override { return "tiled"; }
  std::vector<std::string> kernel_files() const override { return {"w4a16/tiled.cl", "w4a16/gather.cl"}; }

  OpEvents enqueue(Context& c, W4A16Layer& L, const W4A16Call& a) const override {
    const int64_t M = a.M, words = L.Kp / 8;
    oputil::grow_scratch(c, L.xp, L.xp_bytes, size_t(M) * size_t(L.Kp) * 4);
    oputil::grow_scratch(c, L.xw, L.xw_bytes, size_t(M) * size_t(words) * 4);
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    cl::Kernel gather = c.kernel("w4a16/gather.cl", "w4a16_gather_x", defs);
    cl::Kernel main_k = c.kernel("w4a16/tiled.cl", "w4a16_gemm_tiled", defs);
    OpEvents ev;
    set_args(gather, *a.x, L.perm, L.xp, L.xw, cl_int(M), cl_int(L.K), cl_int(L.Kp));
    ev.add(launch(c, gather, cl::NDRange(oputil::round_up(size_t(words), 64), size_t(M)), cl::NDRange(64, 1),
                  "w4a16_gather_x"),
           "w4a16_gather_x");
    set_args(main_k, L.qw, L.scales, L.zeros, L.wgroup, L.xp, *a.y, cl_int(M), cl_int(L.N), cl_int(L.Np),
             cl_int(L.block_n), cl_int(L.Kp));
    const std::string what = "w4a16_gemm_tiled (M=" + std::to_string(M) + ")";
    ev.add(launch(c, main_k, cl::NDRange(size_t((L.N + 63) / 64) * 16, size_t((M + 63) / 64) * 16),
                  cl::NDRange(16, 16), what),
           what);
    return ev;
  }
};

}  // namespace

const W4A16Launcher& w4a16_tiled_launcher() {
  static const Tiled l;
  return l;
}

}  // namespace clq
