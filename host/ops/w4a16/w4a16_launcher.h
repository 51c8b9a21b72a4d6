// The W4A16 launchers' shared face: the device-resident layer they read (uploaded once by
// W4A16Gemm), one call's arguments, and the interface each variant implements. Each launcher
// lives in its own file next to this one (gemv.cpp, tiled.cpp, nv_mma_skinny.cpp,
// nv_mma_tiled.cpp) and owns its kernels, defines, argument order, geometry and scratch.
#pragma once
#include <cstdint>
#include <vector>

#include "host/numeric.h"
#include "host/caps/tuning.h"
#include "host/ops/launcher.h"
#include "host/ops/op_events.h"
#include "host/ops/w4a16/w4a16_config.h"
#include "runtime/context.h"

namespace clq {

// One integer layer on the device, in every layout its launchers read. The int8 weight-only op
// (host/ops/w8a16_int8) keeps its layer here too (bits = 8: 4-row words in qw, fp32 scales, u16
// zeros, gstart/wgroup in 4-row words), so the activation gather and the scratch are shared.
struct W4A16DeviceLayer {
  int bits = 4;
  int64_t K = 0, N = 0, Kp = 0, G = 0;
  GemvGeometry g;  // portable register-tiled layout: columns padded to g.Np, blocks of g.block_n
  cl::Buffer qw, scales, zeros, perm, gstart, wgroup;
  // Tensor-core fragment layout (nv_mma_skinny, nv_mma_tiled), uploaded where the mma probe passed.
  cl::Buffer qf, sz, wgroupf, descf;
  int64_t tiles = 0, chunks = 0;
  bool identity_perm = false;  // packed row r is activation column r (no act-order, no padding inside)
  bool scales_fp16_safe = false;  // every |scale| is 0 or in [2^-14, 4094]: (q - z) * s stays a normal fp16
  // Scratch, grown on demand and shared by the launchers (one call runs at a time).
  cl::Buffer xp, xw, part, count;
  size_t xp_bytes = 0, xw_bytes = 0, part_bytes = 0, count_bytes = 0;
  bool has_fragment_layout() const { return tiles > 0; }
};

struct W4A16Call : GemmIo {
  W4A16RunOptions opt;
};

class W4A16Launcher : public Launcher {
 public:
  using Launcher::Launcher;
  std::vector<std::string> ops() const override { return {"w4a16_gemm"}; }
  // Rules of this variant beyond the op's own (checked by W4A16Gemm before any launch).
  virtual Check can_implement(const W4A16DeviceLayer& layer, const W4A16Call& call, const DeviceFeatures& f) const {
    return Check::pass();
  }
  // Allocates its scratch first (so a failed allocation leaves nothing enqueued), then enqueues.
  virtual OpEvents enqueue(Context& c, W4A16DeviceLayer& layer, const W4A16Call& call) const = 0;
};

// The face both integer ops share (W4A16Gemm, W8A16Int8Gemm): one device layer and one op's
// launchers, can_implement -> choose -> run.
class IntLayerGemm {
 public:
  virtual ~IntLayerGemm() = default;
  int64_t K() const { return L_.K; }
  int64_t N() const { return L_.N; }
  int64_t G() const { return L_.G; }

  // The call rules (M, 32-bit index limits, buffer sizes, activation scratch): throws
  // InvalidArgument/InvalidShape naming the rule and values; enqueues nothing.
  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const;
  const VariantRow& choose(int64_t M, const std::string& variant) const;

  // x: [M][K] of xt; y: [M][N] of yt. Checks the call, picks the op's capability-table row, asks
  // its launcher to check and enqueue; returns every launch, and the row that ran.
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
               const W4A16RunOptions& opt = {});
  const W4A16DeviceLayer& layer() const { return L_; }

 protected:
  IntLayerGemm(Context& c, const char* op, const std::vector<const W4A16Launcher*>& launchers)
      : c_(c), op_(op), launchers_(&launchers) {}
  // Uploads a device layout array (read-only).
  cl::Buffer upload(const void* data, size_t bytes);
  Context& c_;
  W4A16DeviceLayer L_;

 private:
  const char* op_;
  const std::vector<const W4A16Launcher*>* launchers_;
};

// The portable tiled variants' launch (w4a16/tiled.cl, w8a16_int8/tiled.cl: the same arguments and
// 64x64 tiles of 16x16 work-items, after the activation gather).
OpEvents enqueue_portable_tiled(Context& c, W4A16DeviceLayer& L, const W4A16Call& a, const char* file,
                                const char* entry);

// The W4A16 launchers, one per implemented variant of the w4a16_gemm table rows.
const std::vector<const W4A16Launcher*>& w4a16_launchers();
const W4A16Launcher* w4a16_launcher(const std::string& variant);

// The portable variants' activation pass (kernels_cl/w4a16/gather.cl, w4a16_gather_x): x in the
// packed row order (act-order) as fp32, nibble-scaled for gemv, plus per-word sums. Prepared
// (scratch grown, kernel built) before the variant's own kernel is built; enqueued first.
struct GatherX {
  cl::Kernel kernel;
  void enqueue(Context& c, OpEvents& ev, const W4A16DeviceLayer& L, const W4A16Call& a) const;
};
GatherX prepare_gather_x(Context& c, W4A16DeviceLayer& L, const W4A16Call& a, bool nibble_scaled);

// Launch shapes, exposed for tests and sweeps (CLQ_NV_SKINNY / CLQ_NV_TILED override them).
int w4a16_gemv_splits(const W4A16DeviceLayer& L, const DeviceFeatures& f, int64_t M, int requested);
NvSkinnyConfig nv_skinny_config(const W4A16DeviceLayer& L, const DeviceFeatures& f, int64_t M, DType xt, int requested);
NvTiledConfig nv_tiled_config(const W4A16DeviceLayer& L, const DeviceFeatures& f, int64_t M, DType xt, int requested);

}  // namespace clq
