// The w4a16_gemm launchers, one per implemented variant of its capability-table rows.
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

const W4A16Launcher& w4a16_gemv_launcher();
const W4A16Launcher& w4a16_tiled_launcher();
const W4A16Launcher& w4a16_nv_mma_skinny_launcher();
const W4A16Launcher& w4a16_nv_mma_tiled_launcher();

const std::vector<const W4A16Launcher*>& w4a16_launchers() {
  static const std::vector<const W4A16Launcher*> all = {&w4a16_gemv_launcher(), &w4a16_tiled_launcher(),
                                                        &w4a16_nv_mma_skinny_launcher(),
                                                        &w4a16_nv_mma_tiled_launcher()};
  return all;
}

const W4A16Launcher* w4a16_launcher(const std::string& variant) {
  for (auto* l : w4a16_launchers())
    if (variant == l->variant()) return l;
  return nullptr;
}

}  // namespace clq
