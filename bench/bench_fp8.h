#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace clq::bench {

struct Fp8BenchConfig : DenseBenchConfig {  // shapes: DeepSeek-V3's; ms: {1, 64, 128, 4096}
  // compressed-tensors FP8 channel strategy instead of 128x128 blocks: weight_scale [N, 1] and
  // activations per token over all K (`clquant bench fp8_channel`; rows named fp8_channel).
  bool channel = false;
};

// Block-scaled W8A8 over DeepSeek-V3's linear shapes (N x K in {2112x7168, 24576x1536, 32768x512,
// 7168x16384, 4096x7168, 7168x2048}), plus the activation quantizer alone ("fp8_quant" rows,
// whose GB/s counts x read, codes and fp32 GEMM operand written, scales written).
std::vector<Row> bench_fp8(Context& c, const Fp8BenchConfig& cfg, std::ostream* progress);

}  // namespace clq::bench
