#include "bench/bench_quant.h"

#include "host/ops/quantize/weight_quant.h"
#include "host/synth/synth.h"

namespace clq::bench {

std::vector<Row> bench_quant(Context& c, const QuantBenchConfig& cfg, std::ostream* progress) {
  auto shapes = cfg.shapes;
  if (shapes.empty())
    shapes = cfg.quick ? std::vector<std::pair<int64_t, int64_t>>{{1024, 1024}}
                       : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {28672, 8192}};
  struct Method {
    const char* name;
    QuantSpec spec;
  };
  const Method methods[] = {{"int4 g128 sym", {QuantMethod::kInt4, 128, true}},
                            {"int4 g128 asym", {QuantMethod::kInt4, 128, false}},
                            {"int8 channel", {QuantMethod::kInt8, -1, true}},
                            {"fp8-block", {QuantMethod::kFp8Block, 128, true}}};
  std::vector<Row> rows;
  WeightQuantizer q(c);
  for (auto [N, K] : shapes) {
    const auto w = random_activations(N, K, DType::kBF16, uint64_t(N * 13 + K));
    DenseWeight dw;
    dw.name = "bench";
    dw.dtype = DType::kBF16;
    dw.N = N;
    dw.K = K;
    dw.data = w.data();
    for (const Method& m : methods) {
      QuantizedWeight out;
      const double codes = m.spec.method == QuantMethod::kInt4 ? 0.5 : 1.0;
      const double bytes = double(N) * double(K) * (2.0 + codes);
      rows.push_back(measure_case(
          c, "weight_quant", std::to_string(N) + "x" + std::to_string(K) + " " + m.name, "portable", N, N, K, 0.0,
          bytes, [&] { return q.run(dw, m.spec, &out); }, false, cfg.reps > 0 ? cfg.reps : 5, progress));
    }
  }
  return rows;
}

}  // namespace clq::bench
