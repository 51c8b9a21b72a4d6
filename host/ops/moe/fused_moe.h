// FusedMoe (SPEC section 5): routing, alignment, grouped expert GEMMs with the SwiGLU and the
// routing weight fused, and the weighted combine, all enqueued on the device with no host round
// trip between them. can_implement -> run, like every op.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/formats/moe.h"
#include "host/numeric.h"
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
  // The decode path (kernels_cl/moe/decode.cl: four launches, each GEMM reading an expert's
  // weights once per aligned block and finishing its own split-K reduction and the combine):
  // 0 = where it applies and pays (a GPU, T * top_k <= 512, fp16/bf16 or FP8 experts, no
  // expert_map), 1 = always (InvalidArgument naming the rule where it does not apply), -1 = never.
  int decode = 0;
};

// Host twin of the routing kernels (fp32, same formulas and tie rules).
void moe_route_host(const std::vector<float>& logits, int64_t T, int64_t E, const MoeRouting& r, const float* bias,
                    std::vector<int>* ids, std::vector<float>* weights);

// fp64 reference given the routing: per token and chosen expert, h = x W13^T, a = silu(g) * u,
// out += w * (a W2^T). FP8 experts see their activations quantized as the device does (x per
// token per 128 columns; a rounded to fp32, then likewise).
std::vector<double> moe_reference(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                  const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                                  const std::vector<int>& expert_map = {});

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

  int64_t E() const { return E_; }
  int64_t H() const { return H_; }
  int64_t I() const { return I_; }
  MoeWeightKind kind() const { return kind_; }
  bool has_router() const { return has_router_; }
  int block_size_for(int64_t T, int top_k) const;
  // Whether run() with these options takes the decode path (o.decode == 1: it does or fails).
  bool decode_applies(int64_t T, int top_k, const MoeRunOptions& o) const {
    return o.decode > 0 || use_decode(T, top_k, o);
  }
  // Bytes of expert weights one expert's GEMMs read (both projections, scales included).
  double expert_bytes() const { return expert_bytes_; }

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

 private:
  OpEvents run_experts(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, int top_k,
                       const MoeRunOptions& o, OpEvents ev);
  // Whether the decode path runs this call; with o.decode == 1 a reason it cannot is an error.
  bool use_decode(int64_t T, int top_k, const MoeRunOptions& o) const;
  // The decode path: logits and FP8 staging (one launch), top-k with the alignment (one launch;
  // r == nullptr: ids and weights were written by the host, the alignment alone runs), gate_up,
  // down with the combine (moe/decode.cl). logits: the caller's, or nullptr for the router's.
  OpEvents run_decode(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, int top_k,
                      const MoeRunOptions& o, const MoeRouting* r, const cl::Buffer* logits);
  int decode_splits(int64_t tiles, int64_t blocks, int64_t units, int64_t min_units, int forced) const;
  void grow(cl::Buffer& b, size_t& have, size_t need);
  std::string weight_defines() const;

  Context& c_;
  MoeWeightKind kind_;
  int64_t E_, H_, I_;
  int64_t Kp1_ = 0, Kp2_ = 0;  // padded K of gate_up (H) and down (I)
  int64_t Np1_ = 0, Np2_ = 0, block_n1_ = 0, block_n2_ = 0;
  int cols_ = 4, rows_max_ = 4;
  bool dense_bf16_ = false, has_router_ = false, has_bias_ = false;
  int64_t w1_stride_ = 0, w2_stride_ = 0, g1_stride_ = 0, g2_stride_ = 0, sw1_stride_ = 0, sw2_stride_ = 0;
  double expert_bytes_ = 0;
  cl::Buffer w1_, w2_, sc1_, sc2_, z1_, z2_, sw1_, sw2_, gstart1_, gstart2_, wgroup1_, wgroup2_, perm1_, perm2_;
  cl::Buffer router_, bias_;
  // scratch
  cl::Buffer logits_, ids_, topw_, counts_, sorted_, expert_ids_, npp_, map_;
  cl::Buffer xs1_, aux1_, codes1_, a_, xs2_, aux2_, codes2_, y2_, part1_, part2_;
  size_t part1_b_ = 0, part2_b_ = 0;
  cl::Buffer cnt1_, cnt2_, tokcnt_;  // decode split-K / combine counters: zero between calls
  size_t cnt1_b_ = 0, cnt2_b_ = 0, tokcnt_b_ = 0;
  size_t logits_b_ = 0, ids_b_ = 0, topw_b_ = 0, counts_b_ = 0, sorted_b_ = 0, expert_ids_b_ = 0, npp_b_ = 0,
         map_b_ = 0;
  size_t xs1_b_ = 0, aux1_b_ = 0, codes1_b_ = 0, a_b_ = 0, xs2_b_ = 0, aux2_b_ = 0, codes2_b_ = 0, y2_b_ = 0;
  int64_t last_T_ = 0, last_k_ = 0;
  // The aligned dispatch of one call: block size, token slots, padded slots and blocks at most.
  struct DispatchSize {
    int bs = 0;
    int64_t TK = 0, S_max = 0, B_max = 0;
  };
  DispatchSize dispatch_size(int64_t T, int K, const MoeRunOptions& o);
  int last_bs_ = 0;
};

}  // namespace clq
