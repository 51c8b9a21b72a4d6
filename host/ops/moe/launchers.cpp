// The FusedMoe launchers, one per implemented variant of the fused_moe capability-table rows,
// and the pieces of the device layer they share.
#include <algorithm>

#include "host/ops/moe/moe_launcher.h"
#include "host/ops/op_util.h"

namespace clq {

const MoeLauncher& moe_general_launcher();
const MoeLauncher& moe_decode_launcher();
const MoeLauncher& moe_nv_wgmma_launcher();

const std::vector<const MoeLauncher*>& moe_launchers() {
  static const std::vector<const MoeLauncher*> all = {&moe_general_launcher(), &moe_decode_launcher(),
                                                            &moe_nv_wgmma_launcher()};
  return all;
}

const MoeLauncher* moe_launcher(const std::string& variant) {
  return find_variant(moe_launchers(), variant);
}

void MoeDeviceLayer::grow(Context& c, cl::Buffer& b, size_t& have, size_t need) {
  oputil::grow_scratch(c, b, have, std::max<size_t>(need, 4));
}

int MoeDeviceLayer::block_size_for(int64_t T, int k) const {
  // Rows each active expert gets on average; a block never pads one token to many rows (decode
  // with T = 1 and k = 8 uses blocks of 1: eight rows, no padding).
  const int64_t slots = T * k;
  const int64_t active = std::min<int64_t>(E, slots);
  const int64_t avg = (slots + active - 1) / active;
  int bs = 1;
  while (bs < avg && bs < 16) bs *= 2;
  return bs;
}

MoeDeviceLayer::DispatchSize MoeDeviceLayer::dispatch_size(int64_t T, int K, int block_size) {
  // Every expert's run padded to whole blocks: at most TK + E (bs - 1) slots (SPEC section 5).
  DispatchSize d;
  d.bs = block_size > 0 ? block_size : block_size_for(T, K);
  d.TK = T * K;
  d.S_max = int64_t(oputil::round_up(size_t(d.TK + E * (d.bs - 1)), size_t(d.bs)));
  d.B_max = d.S_max / d.bs;
  last_T = T;  // what read_alignment() reads back
  last_k = K;
  last_bs = d.bs;
  return d;
}

}  // namespace clq
