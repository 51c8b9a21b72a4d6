#pragma once
#include <string>
#include <vector>

#include "bench/harness.h"

namespace clq::bench {

struct W4A16BenchConfig : DenseBenchConfig {
  bool act_order = false;
  int bits = 4;  // 8: the int8 weight-only op (w8a16_int8_gemm) on GPTQ 8-bit weights
  bool w8a8 = false;  // the W8A8 int8 op (per-token int8 activations) on per-channel int8 weights
  bool w4a8 = false;  // W4A8 (e4m3 activations per token, quantizer included) on the same int4 layers
};

// The standard shapes of the issue: N x K in {4096x4096, 14336x4096, 4096x14336, 8192x8192,
// 28672x8192, 8192x28672}, M in {1, 16, 64, 256, 4096}; quick = a subset sized for a 2-core CPU.
// bits = 8 measures W8A16 int8 on the same shapes (`clquant bench w8a16_int8`).
std::vector<Row> bench_w4a16(Context& c, const W4A16BenchConfig& cfg, std::ostream* progress);

}  // namespace clq::bench
