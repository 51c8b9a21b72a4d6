// w8a16_int8_gemm/tiled: 64x64 output tiles per work-group of 16x16, weights dequantized once per
// tile into local memory (kernels_cl/w8a16_int8/tiled.cl); activations gathered into fp32 first.
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"

namespace clq {

namespace {

class Tiled final : public W8A16Int8Launcher {
 public:
  Tiled() : W8A16Int8Launcher("tiled", {"w8a16_int8/tiled.cl", "w4a16/gather.cl"}) {}

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    return enqueue_portable_tiled(c, L, a, "w8a16_int8/tiled.cl", "w8a16_int8_gemm_tiled");
  }
};

}  // namespace

const W4A16Launcher& w8a16_int8_tiled_launcher() {
  static const Tiled l;
  return l;
}

}  // namespace clq
