// The FP8 launchers, one per implemented variant of the fp8_block_gemm / fp8_tensor_gemm /
// w8a16_gemm capability-table rows.
#include "host/ops/fp8/fp8_launcher.h"

namespace clq {

const Fp8Launcher& fp8_gemv_launcher();
const Fp8Launcher& fp8_tiled_launcher();
const Fp8Launcher& fp8_nv_mma_e4m3_launcher();
const Fp8Launcher& fp8_nv_wgmma_e4m3_launcher();

const std::vector<const Fp8Launcher*>& fp8_launchers() {
  static const std::vector<const Fp8Launcher*> all = {&fp8_gemv_launcher(), &fp8_tiled_launcher(),
                                                      &fp8_nv_mma_e4m3_launcher(), &fp8_nv_wgmma_e4m3_launcher()};
  return all;
}

const Fp8Launcher* fp8_launcher(const std::string& variant) {
  return find_variant(fp8_launchers(), variant);
}

}  // namespace clq
