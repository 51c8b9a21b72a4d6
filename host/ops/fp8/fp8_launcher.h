// The FP8 launchers' shared face (block W8A8, per-tensor W8A8 and W8A16 share one kernel family:
// scales broadcast, or activations left unquantized). Each launcher lives in its own file next to
// this one (gemv.cpp, tiled.cpp, nv_mma_e4m3.cpp) and owns its kernels, defines, argument order,
// geometry, scratch and the form of activations it asks the quantizer for.
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "host/ops/fp8/fp8_quant.h"
#include "host/caps/tuning.h"
#include "host/ops/launcher.h"

namespace clq {

// One e4m3 layer on the device in the portable register-tiled layout (host/caps/tuning.h).
struct Fp8DeviceLayer {
  int64_t N = 0, K = 0, Kp = 0, Nb = 0, Kb = 0;
  bool block = true;  // 128x128 block scales (else one per-tensor scale, broadcast)
  GemvGeometry g;  // portable register-tiled layout: columns padded to g.Np, blocks of g.block_n
  cl::Buffer qw, sw;
  cl::Buffer part;  // split-K scratch, grown on demand
  size_t part_bytes = 0;
  bool channel = false;   // per-channel weight scales sn, applied by fp8_channel_scale after the GEMM
  cl::Buffer sn, acc;     // sn [N]; acc: the GEMM's fp32 output before the channel scales, grown on demand
  size_t acc_bytes = 0;
  cl::Buffer rows;         // [round_up(N, 128)][Kp] codes, K contiguous: the wgmma variant's copy, made on first use
  bool have_rows = false;
};

struct Fp8Call : GemmIo {
  Fp8Act act = Fp8Act::kBlockDynamic;
  std::optional<float> input_scale;
  int splits = 0;  // 0 = heuristic
};

class Fp8Launcher : public Launcher {
 public:
  using Launcher::Launcher;
  std::vector<std::string> ops() const override { return {"fp8_block_gemm", "fp8_tensor_gemm", "w8a16_gemm"}; }
  virtual Check can_implement(const Fp8DeviceLayer& layer, const Fp8Call& call, const DeviceFeatures& f) const {
    return Check::pass();
  }
  // Builds its kernels first (a build failure leaves nothing enqueued), quantizes, then enqueues.
  virtual OpEvents enqueue(Context& c, Fp8DeviceLayer& layer, Fp8Quantizer& quant, const Fp8Call& call) const = 0;
};

const std::vector<const Fp8Launcher*>& fp8_launchers();
const Fp8Launcher* fp8_launcher(const std::string& variant);

// Split-K ranges (whole 128-blocks of K) the launchers use; exposed for tests.
int fp8_gemv_splits(const Fp8DeviceLayer& L, const DeviceFeatures& f, int64_t M);
int fp8_mma_splits(const Fp8DeviceLayer& L, const DeviceFeatures& f, int64_t M);
// `splits` rounded to ranges of whole 128-blocks that all hold work (at most Kb of them).
inline int fp8_whole_splits(const Fp8DeviceLayer& L, int splits) {
  splits = int(std::min<int64_t>(std::max(splits, 1), L.Kb));
  const int64_t bps = (L.Kb + splits - 1) / splits;
  return int((L.Kb + bps - 1) / bps);
}

}  // namespace clq
