#include "bench/bench_fp8.h"

#include "host/ops/fp8/fp8_gemm.h"
#include "host/synth/synth.h"

namespace clq::bench {

std::vector<Row> bench_fp8(Context& c, const Fp8BenchConfig& cfg, std::ostream* progress) {
  auto shapes = cfg.shapes;
  auto ms = cfg.ms;
  if (shapes.empty())
    shapes = cfg.quick ? std::vector<std::pair<int64_t, int64_t>>{{2112, 7168}, {7168, 2048}}
                       : std::vector<std::pair<int64_t, int64_t>>{{2112, 7168},  {24576, 1536}, {32768, 512},
                                                                  {7168, 16384}, {4096, 7168},  {7168, 2048}};
  if (ms.empty()) ms = cfg.quick ? std::vector<int64_t>{1, 64} : std::vector<int64_t>{1, 64, 128, 4096};
  std::vector<Row> rows;
  for (auto [N, K] : shapes) {
    Fp8SynthSpec spec;
    spec.N = N;
    spec.K = K;
    spec.seed = uint64_t(N + 7 * K);
    if (cfg.channel) {
      spec.block = false;
      spec.channel = true;
    }
    Fp8Synth synth(spec);
    Fp8Gemm op(c, repack_fp8(synth.checkpoint()));
    for (int64_t M : ms) {
      Fp8Problem prob;
      prob.M = M;
      prob.N = N;
      prob.K = K;
      auto x = random_activations(M, K, DType::kBF16, uint64_t(M));
      cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
      c.write(dx, x.data(), x.size());
      Fp8RunOptions opt;
      opt.variant = cfg.variant;
      const Fp8Act act = cfg.channel ? Fp8Act::kTokenDynamic : Fp8Act::kBlockDynamic;
      opt.act = act;
      const std::string shape = std::to_string(N) + "x" + std::to_string(K) + " M=" + std::to_string(M);
      rows.push_back(measure_case(
          c, cfg.channel ? "fp8_channel" : "fp8_block", shape, op.choose(M, act, cfg.variant).variant, M, N, K, prob.flops(),
          prob.bytes(), [&] { return op.run(dx, DType::kBF16, dy, DType::kBF16, M, opt); }, cfg.baseline, cfg.reps,
          progress));
    }
  }
  if (cfg.channel) return rows;
  // The quantizer alone, at DeepSeek-V3's hidden size.
  Fp8Quantizer q(c);
  for (int64_t M : ms) {
    const int64_t K = 7168, Kb = K / 128;
    auto x = random_activations(M, K, DType::kBF16, uint64_t(M) + 1);
    cl::Buffer dx = c.alloc(x.size());
    c.write(dx, x.data(), x.size());
    const double bytes = double(M) * double(K) * (2 + 1 + 4) + double(M * Kb) * 4;
    rows.push_back(measure_case(
        c, "fp8_quant", "K=7168 M=" + std::to_string(M), "portable", M, 0, K, 0.0, bytes,
        [&] { return q.run(dx, DType::kBF16, M, K, Fp8Act::kBlockDynamic, std::nullopt); }, false,
        cfg.reps > 0 ? cfg.reps : 11, progress));
  }
  return rows;
}

}  // namespace clq::bench
