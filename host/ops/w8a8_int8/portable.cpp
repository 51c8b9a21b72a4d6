// w8a8_int8_gemm/portable: one output per work-item, plain integer dot products of 4-byte words
// (kernels_cl/w8a8_int8/gemm.cl): every device, the correctness baseline.
#include "host/ops/op_util.h"
#include "host/ops/w8a8_int8/w8a8_int8_launcher.h"

namespace clq {

namespace {

class Portable final : public W8A8Int8Launcher {
 public:
  Portable() : W8A8Int8Launcher("portable", {"w8a8_int8/gemm.cl", "w8a8_int8/quant.cl"}) {}

  int64_t code_words(const W8A8Int8DeviceLayer& L) const override { return L.Kw; }

  OpEvents enqueue(Context& c, W8A8Int8DeviceLayer& L, const W8A8Int8Call& a, const cl::Buffer& codes,
                   const cl::Buffer& scales) const override {
    cl::Kernel gemm = c.kernel("w8a8_int8/gemm.cl", "w8a8_int8_gemm", oputil::io_defines(a.xt, a.yt));
    set_args(gemm, L.qw, L.sw, codes, scales, *a.y, cl_int(a.M), cl_int(L.N), cl_int(L.block_n), cl_int(L.Kw));
    OpEvents ev;
    oputil::enqueue(c, ev, gemm, cl::NDRange(oputil::round_up(size_t(L.N), 64), size_t((a.M + 3) / 4)),
                    cl::NDRange(64, 1), "w8a8_int8_gemm (M=" + std::to_string(a.M) + ")");
    return ev;
  }
};

}  // namespace

const W8A8Int8Launcher& w8a8_int8_portable_launcher() {
  static const Portable l;
  return l;
}

}  // namespace clq
