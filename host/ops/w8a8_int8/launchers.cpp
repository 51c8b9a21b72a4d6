// The w8a8_int8_gemm launchers, one per implemented variant of its capability-table rows.
#include "host/ops/w8a8_int8/w8a8_int8_launcher.h"

namespace clq {

const W8A8Int8Launcher& w8a8_int8_portable_launcher();
const W8A8Int8Launcher& w8a8_int8_nv_wgmma_s8_launcher();

const std::vector<const W8A8Int8Launcher*>& w8a8_int8_launchers() {
  static const std::vector<const W8A8Int8Launcher*> all = {&w8a8_int8_portable_launcher(),
                                                           &w8a8_int8_nv_wgmma_s8_launcher()};
  return all;
}

}  // namespace clq
