// The w8a16_int8_gemm launchers, one per implemented variant of its capability-table rows.
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"

namespace clq {

const W4A16Launcher& w8a16_int8_gemv_launcher();
const W4A16Launcher& w8a16_int8_tiled_launcher();

const std::vector<const W4A16Launcher*>& w8a16_int8_launchers() {
  static const std::vector<const W4A16Launcher*> all = {&w8a16_int8_gemv_launcher(), &w8a16_int8_tiled_launcher()};
  return all;
}

}  // namespace clq
