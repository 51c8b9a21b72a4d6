// Helpers the MoE test files share (test_moe, test_moe_shared, test_moe_quant, test_moe_int8).
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "host/ops/moe/fused_moe.h"
#include "host/reference/reference.h"
#include "host/synth/synth.h"
#include "tests/test_util.h"

namespace clq::test {

// Router logits on a grid of 1/16 with distinct values per token, so no rounding difference
// between the device's and the host's exp/sigmoid can reorder experts (ties are tested
// separately).
inline std::vector<float> grid_logits(int64_t T, int64_t E, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> l(size_t(T * E));
  std::vector<int> perm(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t e = 0; e < E; ++e) l[size_t(t * E + e)] = float(perm[size_t(e)] - E / 2) / 16.0f;
  }
  return l;
}

// The output against the reference, or for FP8 experts against the first alternative reference
// that holds (a value of `a` on an e4m3 rounding midpoint may round either way: docs/numerics.md).
inline ErrorStats compare_moe(const std::vector<uint8_t>& y, DType dt, const std::vector<std::vector<double>>& refs) {
  ErrorStats first = compare_output(y.data(), dt, refs.front());
  if (MoeProblem::within_tolerance(first)) return first;
  for (size_t i = 1; i < refs.size(); ++i) {
    ErrorStats e = compare_output(y.data(), dt, refs[i]);
    if (MoeProblem::within_tolerance(e)) return e;
  }
  return first;
}

// Integer experts (int4 or int8), eight of them, in a GPTQ or compressed-tensors layout.
inline MoeSynthSpec int_experts_spec(MoeWeightKind kind, W4Format f, int64_t H, int64_t I, int gs, bool act_order,
                                     uint64_t seed) {
  MoeSynthSpec s;
  s.kind = kind;
  s.E = 8;
  s.H = H;
  s.I = I;
  s.int4_format = f;
  s.group_size = gs;
  s.act_order = act_order;
  s.seed = seed;
  return s;
}

// One fused MoE call as the quantized-expert tests check it: its activations, output, routing
// and the fused_moe row that ran.
struct MoeRun {
  std::vector<uint8_t> x, y;
  std::vector<int> ids;
  std::vector<float> w;
  std::string row;
};

// One call on the device: router logits on a grid (top-k, renormalized when k > 1; the device's
// routing read back and held to the host twin), or the caller's ids with random weights. The
// output is poisoned first (all ones: NaN in fp16/bf16), so a row never written cannot pass.
inline MoeRun run_moe(FusedMoe& op, const MoeCheckpoint& m, int64_t T, int k, DType dt, uint64_t seed,
                      const MoeRunOptions& o, const std::vector<int>* ids = nullptr) {
  auto& c = ctx();
  MoeRun r;
  r.x = random_activations(T, m.H, dt, seed);
  const size_t yb = size_t(T * m.H) * dtype_size(dt);
  cl::Buffer dx = c.alloc(r.x.size()), dy = c.alloc(yb);
  c.write(dx, r.x.data(), r.x.size());
  c.fill_u32(dy, 0xFFFFFFFFu, yb);
  OpEvents ev;
  if (ids) {
    r.ids = *ids;
    r.w.resize(ids->size());
    std::mt19937_64 rng(seed + 5);
    std::uniform_real_distribution<float> ud(0.1f, 1.0f);
    for (float& v : r.w) v = ud(rng);
    ev = op.run_routed(dx, dt, dy, dt, T, r.ids, r.w, k, o);
  } else {
    MoeRouting rt;
    rt.top_k = k;
    rt.renormalize = k > 1;
    const auto logits = grid_logits(T, m.E, seed + 1);
    cl::Buffer dl = c.alloc(logits.size() * 4);
    c.write(dl, logits.data(), logits.size() * 4);
    ev = op.run(dx, dt, dy, dt, T, rt, o, &dl);
    op.read_routing(&r.ids, &r.w);
    std::vector<int> hids;
    std::vector<float> hw;
    moe_route_host(logits, T, m.E, rt, nullptr, &hids, &hw);
    EXPECT_EQ(r.ids, hids) << "routing differs from the host twin";
  }
  r.row = ev.row ? ev.row->variant : "?";
  r.y.resize(yb);
  c.read(dy, r.y.data(), yb);
  return r;
}

}  // namespace clq::test
