// A model's whole MoE block: the routed experts (FusedMoe) and, when the checkpoint has them,
// the shared experts every token runs through (DeepSeek-V3 shared_experts, Qwen2-MoE's gated
// shared_expert), added to the routed output. This is what the command line, the C API and the
// Python package run; FusedMoe alone is the routed part.
//
// The shared MLP is a FusedMoe of one expert with a fixed routing (top-1, expert 0, weight 1: the
// softmax of one zero logit, so nothing is written from the host between the two parts), so
// it takes the same expert GEMMs, weight kinds and paths as the routed experts. Both write fp32,
// and one small kernel (moe/shared.cl) applies the Qwen2-MoE gate, adds and rounds once to the
// output type: no host round trip, and no second rounding of the routed part.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "host/formats/moe.h"
#include "host/ops/moe/fused_moe.h"

namespace clq {

class MoeBlock {
 public:
  MoeBlock(Context& c, const MoeCheckpoint& m);

  FusedMoe& routed() { return routed_; }
  const FusedMoe& routed() const { return routed_; }
  bool has_shared() const { return shared_ != nullptr; }
  bool shared_gated() const { return gated_; }
  int64_t E() const { return routed_.E(); }
  int64_t H() const { return routed_.H(); }
  int64_t I() const { return routed_.I(); }
  int64_t shared_I() const { return shared_ ? shared_->I() : 0; }

  // The routed experts' rules, and the shared MLP's for the same tokens. The options apply to
  // both (an expert_map selects routed experts only: the shared MLP runs on every call).
  void can_implement(int64_t T, DType xt, DType yt, size_t x_bytes, size_t y_bytes, const MoeRouting& r,
                     const MoeRunOptions& o) const;
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, const MoeRouting& r,
               const MoeRunOptions& o = {}, const cl::Buffer* logits = nullptr);
  OpEvents run_routed(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T,
                      const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                      const MoeRunOptions& o = {});

 private:
  MoeRunOptions shared_options(const MoeRunOptions& o) const;
  // Runs the shared MLP into ys_ and writes y = yr_ + g * ys_ (after the routed part wrote yr_).
  void add_shared(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, const MoeRunOptions& o,
                  OpEvents* ev);

  Context& c_;
  FusedMoe routed_;
  std::unique_ptr<FusedMoe> shared_;
  bool gated_ = false;
  cl::Buffer gate_;                   // fp32 [H]
  cl::Buffer yr_, ys_, zero_logits_;  // fp32 [T][H] routed and shared parts; [T] zeros
  size_t yr_b_ = 0, ys_b_ = 0, zero_logits_b_ = 0;
};

// fp64 reference of the whole block given the routing of the routed experts: moe_reference, plus
// per token g * shared(x) with shared(x) the shared MLP's reference (top-1, weight 1) and g =
// sigmoid(x . shared_gate) in fp64 (1 without a gate).
std::vector<double> moe_block_reference(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                        const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                                        const std::vector<int>& expert_map = {});

}  // namespace clq
