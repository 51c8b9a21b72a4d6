#include "bench/bench_w4a16.h"

#include <iostream>
#include <memory>

#include "host/caps/caps.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/w4a8/w4a8_gemm.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/ops/w8a8_int8/w8a8_int8_gemm.h"
#include "host/synth/synth.h"

namespace clq::bench {

std::vector<Row> bench_w4a16(Context& c, const W4A16BenchConfig& cfg, std::ostream* progress) {
  std::vector<std::pair<int64_t, int64_t>> shapes = cfg.shapes;
  std::vector<int64_t> ms = cfg.ms;
  if (shapes.empty())
    shapes = cfg.quick ? std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {4096, 14336}}
                       : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {14336, 4096}, {4096, 14336},
                                                                  {8192, 8192}, {28672, 8192}, {8192, 28672}};
  if (ms.empty()) ms = cfg.quick ? std::vector<int64_t>{1, 16, 64} : std::vector<int64_t>{1, 16, 64, 256, 4096};
  std::vector<Row> rows;
  for (auto [N, K] : shapes) {
    if (cfg.w8a8) {
      // W8A8 int8: per-channel weights, activations quantized per token inside each run.
      W4Synth synth(w8a8_synth_spec(N, K, uint64_t(N * 31 + K)));
      W8A8Int8Gemm op(c, repack_w8(synth.checkpoint()));
      for (int64_t M : ms) {
        auto x = random_activations(M, K, DType::kF16, uint64_t(M));
        cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
        c.write(dx, x.data(), x.size());
        const double bytes = double(K) * double(N) + double(N) * 4 + double(M) * double(K + N) * 2;
        W8A8Int8RunOptions opt;
        opt.variant = cfg.variant;
        rows.push_back(measure_case(
            c, "w8a8_int8", std::to_string(N) + "x" + std::to_string(K) + " M=" + std::to_string(M),
            select_variant("w8a8_int8_gemm", c.features(), M, cfg.variant).variant, M, N, K,
            2.0 * double(M) * double(N) * double(K), bytes, [&] { return op.run(dx, DType::kF16, dy, DType::kF16, M, opt); },
            cfg.baseline, cfg.reps, progress));
      }
      continue;
    }
    W4SynthSpec spec;
    spec.format = W4Format::kGptq;
    spec.bits = cfg.bits;
    spec.K = K;
    spec.N = N;
    spec.group_size = 128;
    spec.act_order = cfg.act_order;
    spec.seed = uint64_t(N * 31 + K);
    W4Synth synth(spec);
    auto int4_problem = [&](int64_t M) {  // W4A16's bytes and flops; W4A8 streams the same weights
      W4A16Problem prob;
      prob.M = M;
      prob.N = N;
      prob.K = K;
      prob.group_size = 128;
      prob.act_order = cfg.act_order;
      prob.act = DType::kF16;
      return prob;
    };
    if (cfg.w4a8) {
      W4A8Gemm op(c, synth.checkpoint());
      for (int64_t M : ms) {
        const W4A16Problem prob = int4_problem(M);
        auto x = random_activations(M, K, DType::kF16, uint64_t(M));
        cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
        c.write(dx, x.data(), x.size());
        W4A8RunOptions opt;
        opt.int4_variant = cfg.variant;
        rows.push_back(measure_case(
            c, "w4a8", std::to_string(N) + "x" + std::to_string(K) + " M=" + std::to_string(M),
            std::string("emulated/") + op.int4_row(M, cfg.variant).variant, M, N, K, prob.flops(), prob.bytes(),
            [&] { return op.run(dx, DType::kF16, dy, DType::kF16, M, opt); }, cfg.baseline, cfg.reps, progress));
      }
      continue;
    }
    const std::unique_ptr<IntLayerGemm> opp = make_int_layer_gemm(c, synth.checkpoint());
    IntLayerGemm& op = *opp;
    for (int64_t M : ms) {
      const W4A16Problem prob = int4_problem(M);
      W8A16Int8Problem prob8;
      prob8.M = M;
      prob8.N = N;
      prob8.K = K;
      prob8.group_size = 128;
      const double bytes = cfg.bits == 8 ? prob8.bytes() : prob.bytes();
      auto x = random_activations(M, K, DType::kF16, uint64_t(M));
      cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
      c.write(dx, x.data(), x.size());
      W4A16RunOptions opt;
      opt.variant = cfg.variant;
      Row r = measure_case(
          c, cfg.bits == 8 ? "w8a16_int8" : "w4a16",
          std::to_string(N) + "x" + std::to_string(K) + " M=" + std::to_string(M) + (cfg.act_order ? " act" : ""),
          op.choose(M, cfg.variant).variant, M, N, K, prob.flops(), bytes,
          [&] { return op.run(dx, DType::kF16, dy, DType::kF16, M, opt); }, cfg.baseline, cfg.reps, progress);
      rows.push_back(r);
    }
  }
  return rows;
}

}  // namespace clq::bench
