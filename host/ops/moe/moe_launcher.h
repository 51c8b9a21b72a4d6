// The FusedMoe launchers' shared face: the two paths of the fused MoE layer are the variants of
// the capability-table op `fused_moe` (host/caps/caps.cpp), each one launcher in its own file
// next to this one, owning its kernels, defines, argument order, geometry and scratch:
//
//   general.cpp  routing kernels (moe/topk.cl), alignment (moe/align.cl), activation staging
//                (w4a16/gather.cl, fp8/quant.cl), grouped expert GEMMs with their split-K
//                reductions and the combine (moe/general.cl); every weight kind, any T
//   nv_wgmma.cpp the general path's routing and alignment (blocks of 128 slots), then the two
//                grouped GEMMs on sm_90a wgmma (moe/nv_wgmma.cl) and the combine; 16-bit
//                experts, prefill
//   decode.cpp   four launches (moe/decode.cl, moe/topk.cl): routing + FP8 staging, top-k with
//                the alignment, gate_up with the SwiGLU, down with the combine; few tokens
//
// FusedMoe (fused_moe.h) validates the call, chooses the row and calls its launcher.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/caps/tuning.h"
#include "host/formats/moe.h"
#include "host/ops/launcher.h"
#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq {

struct MoeRouting;
struct MoeRunOptions;

// One MoE layer on the device: the experts' weights in the kernels' layouts (uploaded once by
// FusedMoe) and the scratch the launchers grow on demand.
struct MoeDeviceLayer {
  MoeWeightKind kind = MoeWeightKind::kDense;
  int64_t E = 0, H = 0, I = 0;
  int64_t Kp1 = 0, Kp2 = 0;  // padded K of gate_up (H) and down (I)
  GemvLayout lay1, lay2;     // register-tiled layouts of gate_up (2I columns) and down (H)
  bool dense_bf16 = false, has_router = false, has_bias = false;
  int64_t w1_stride = 0, w2_stride = 0, g1_stride = 0, g2_stride = 0, sw1_stride = 0, sw2_stride = 0;
  double expert_bytes = 0;
  // sc / z: group scales and true zeros, fp16 and u8 for int4 experts, fp32 and u16 for int8.
  cl::Buffer w1, w2, sc1, sc2, z1, z2, sw1, sw2, gstart1, gstart2, wgroup1, wgroup2, perm1, perm2;
  // Int4 / int8 act-order: the experts' gate_up (act1) or down (act2) rows are in per-expert orders, so
  // perm1 / perm2 hold [E][Kp] and the activations are gathered per GEMM row (general.cpp); false:
  // one order for every expert (expert 0's perm), gathered once per token as before.
  bool act1 = false, act2 = false;
  // FP8: dynamic activation scales rounded up to powers of two (config.json scale_fmt: ue8m0).
  bool ue8m0 = false;
  cl::Buffer router, bias;
  // scratch
  cl::Buffer logits, ids, topw, counts, sorted, expert_ids, npp, map;
  cl::Buffer xs1, aux1, codes1, a, xs2, aux2, codes2, y2, part1, part2;
  size_t part1_b = 0, part2_b = 0;
  cl::Buffer a_hi, a_lo;  // nv_wgmma: the SwiGLU output as two 16-bit arrays [S][Kp2], a = hi + lo
  size_t a_hi_b = 0, a_lo_b = 0;
  cl::Buffer cnt1, cnt2, tokcnt;  // decode split-K / combine counters: zero between calls
  size_t cnt1_b = 0, cnt2_b = 0, tokcnt_b = 0;
  size_t logits_b = 0, ids_b = 0, topw_b = 0, counts_b = 0, sorted_b = 0, expert_ids_b = 0, npp_b = 0, map_b = 0;
  size_t xs1_b = 0, aux1_b = 0, codes1_b = 0, a_b = 0, xs2_b = 0, aux2_b = 0, codes2_b = 0, y2_b = 0;
  // What the last call routed and aligned (FusedMoe::read_routing, read_alignment).
  int64_t last_T = 0, last_k = 0;
  int last_bs = 0;

  // Scratch only grows (at least 4 bytes: every kernel argument is a real buffer).
  static void grow(Context& c, cl::Buffer& b, size_t& have, size_t need);
  // Rows per aligned block for T tokens of k experts each (FusedMoe::block_size_for).
  int block_size_for(int64_t T, int k) const;
  // The aligned dispatch of one call: block size, token slots, padded slots and blocks at most
  // (and noted as the call that read_alignment reads back).
  struct DispatchSize {
    int bs = 0;
    int64_t TK = 0, S_max = 0, B_max = 0;
  };
  DispatchSize dispatch_size(int64_t T, int K, int block_size);
};

// One call: x [T][H] of xt in, y [T][H] of yt out, `top_k` experts per token. routing ==
// nullptr: the ids and weights are already in layer.ids / layer.topw (FusedMoe::run_routed);
// logits == nullptr: the router weight scores the tokens.
struct MoeCall : GemmIo {
  int top_k = 1;
  const MoeRouting* routing = nullptr;
  const cl::Buffer* logits = nullptr;
  const MoeRunOptions* opt = nullptr;
};

class MoeLauncher : public Launcher {
 public:
  using Launcher::Launcher;
  std::vector<std::string> ops() const override { return {"fused_moe"}; }
  // Whether this path takes the call (after FusedMoe's validation); a refusal names the rule.
  virtual Check can_implement(const MoeDeviceLayer& layer, const MoeCall& call, const DeviceFeatures& f) const = 0;
  // Grows its scratch first (a failed allocation leaves nothing enqueued), then enqueues.
  virtual OpEvents enqueue(Context& c, MoeDeviceLayer& layer, const MoeCall& call) const = 0;
};

const std::vector<const MoeLauncher*>& moe_launchers();
// Router logits (unless the caller gave them) and top-k into layer.ids / layer.topw: the general
// path's routing launches (moe/topk.cl), which the nv_wgmma path shares.
void moe_route(Context& c, MoeDeviceLayer& layer, const MoeCall& call, OpEvents& ev);
const MoeLauncher* moe_launcher(const std::string& variant);

}  // namespace clq
