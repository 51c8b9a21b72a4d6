// FusedMoe (SPEC section 5): routing, alignment, grouped expert GEMMs with the SwiGLU and the
// routing weight fused, and the weighted combine, all enqueued on the device with no host round
// trip between them. A short dispatcher like every op: it validates the call once, chooses the
// fused_moe row of the capability table (general or decode, host/ops/moe/moe_launcher.h) and
// calls that row's launcher.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/caps/caps.h"
#include "host/formats/moe.h"
#include "host/numeric.h"
#include "host/ops/moe/moe_launcher.h"
#include "host/ops/op_events.h"
#include "host/reference/reference.h"
#include "runtime/context.h"

namespace clq {

struct MoeRouting {
  enum class Kind { kSoftmax, kGrouped };
  Kind kind = Kind::kSoftmax;
  int top_k = 2;
  bool renormalize = false;
  // grouped (DeepSeek-V3 noaux_tc):
  int n_group = 1, topk_group = 1;
  float routed_scaling = 1.0f;
  bool softmax_scores = false;  // grouped scoring function: sigmoid (default) or softmax
};

// The routing of a model family's config.json (host/formats/moe.h: read_moe_config); top_k stays
// 0 when the config does not say it.
MoeRouting moe_routing_from_config(const MoeConfig& c);

struct MoeRunOptions {
  int block_size = 0;           // rows per aligned block; 0 = chosen from T, k and E
  std::vector<int> expert_map;  // expert parallelism: [E] -> local id or -1 (skipped); empty = all local
  int splits = 0;               // split-K ranges of the expert GEMMs; 0 = chosen from the device (tests force it)
  // The fused_moe row to run ("general" or "decode"; empty = the table's choice: the decode path
  // where its row applies and it can take the call, i.e. not a CPU, T * top_k <= 512, fp16/bf16
  // or FP8 experts (not int4 or int8), no expert_map; the general path otherwise). A forced row that cannot take the call is an InvalidArgument
  // naming the rule. CLQ_VARIANT=fused_moe=... forces one too.
  std::string variant;
  // The older spelling of the same choice: 1 = "decode", -1 = "general", 0 = `variant` decides.
  int decode = 0;
};

// Host twin of the routing kernels (fp32, same formulas and tie rules).
void moe_route_host(const std::vector<float>& logits, int64_t T, int64_t E, const MoeRouting& r, const float* bias,
                    std::vector<int>* ids, std::vector<float>* weights);

// fp64 reference given the routing: per token and chosen expert, h = x W13^T, a = silu(g) * u,
// out += w * (a W2^T). FP8 experts see their activations quantized as the device does (x per
// token per 128 columns; a rounded to fp32, then likewise; scales rounded up to powers of two
// when m.ue8m0_act_scales). Int4 and int8 experts are dequantized from the checkpoint as stored
// (dequantize_w4 reads g_idx and either width), never from the act-order-sorted device layout.
std::vector<double> moe_reference(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                  const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                                  const std::vector<int>& expert_map = {});
// The reference, then for FP8 experts one more per value of `a` that lies within 1e-5 of an e4m3
// rounding midpoint (at most max_flips), with that value rounded the other way: fp32 sums in the
// device's order may round it either way (docs/numerics.md), so a check passes on any of them.
std::vector<std::vector<double>> moe_reference_alternatives(const MoeCheckpoint& m, const void* x, DType xt,
                                                            int64_t T, const std::vector<int>& ids,
                                                            const std::vector<float>& weights, int top_k,
                                                            const std::vector<int>& expert_map = {},
                                                            int max_flips = 4);

struct MoeProblem {
  int64_t T = 1, E = 8, H = 0, I = 0;
  int top_k = 2;
  MoeWeightKind kind = MoeWeightKind::kDense;
  static constexpr double kMaxAbsTolerance = 2e-2;  // SPEC section 6, unit-scale inputs
  static constexpr double kRelTolerance = 1e-3;
  double flops() const { return 2.0 * double(T) * top_k * 3.0 * double(H) * double(I); }
  static bool within_tolerance(const ErrorStats& e) {
    return e.nan_count == 0 && e.max_abs_err < kMaxAbsTolerance && e.rel_mean() < kRelTolerance;
  }
};

class FusedMoe {
 public:
  FusedMoe(Context& c, const MoeCheckpoint& m);

  int block_size_for(int64_t T, int top_k) const { return L_.block_size_for(T, top_k); }
  // The fused_moe row run() takes for T tokens of top_k experts with these options (a forced row
  // that cannot take the call throws its refusal).
  const VariantRow& choose(int64_t T, int top_k, const MoeRunOptions& o = {}) const;
  // Whether run() with these options takes the decode path (forced: it does or fails).
  bool decode_applies(int64_t T, int top_k, const MoeRunOptions& o) const;
  // Bytes of expert weights one expert's GEMMs read (both projections, scales included).
  double expert_bytes() const { return L_.expert_bytes; }

  void can_implement(int64_t T, DType xt, DType yt, size_t x_bytes, size_t y_bytes, const MoeRouting& r,
                     const MoeRunOptions& o) const;
  // Routing from the router weight (or from `logits` [T][E] fp32 when given).
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, const MoeRouting& r,
               const MoeRunOptions& o = {}, const cl::Buffer* logits = nullptr);
  // Routing given by the caller: ids [T][k] (validated: each in [0, E)) and weights [T][k].
  OpEvents run_routed(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T,
                      const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                      const MoeRunOptions& o = {});

  // What the last run routed and aligned (tests, tools).
  void read_routing(std::vector<int>* ids, std::vector<float>* weights) const;
  void read_alignment(std::vector<int>* sorted_ids, std::vector<int>* expert_ids, int* num_post_padded) const;
  void read_logits(std::vector<float>* logits) const;

  // The layer.
  int64_t E() const { return L_.E; }
  int64_t H() const { return L_.H; }
  int64_t I() const { return L_.I; }
  MoeWeightKind kind() const { return L_.kind; }
  bool has_router() const { return L_.has_router; }

 private:
  // The row and launcher for one call (after validation).
  const VariantRow& choose(const MoeCall& call) const;
  OpEvents dispatch(MoeCall& call);

  Context& c_;
  MoeDeviceLayer L_;
};

}  // namespace clq
