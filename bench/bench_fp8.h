#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace clq::bench {

struct Fp8BenchConfig {
  bool quick = false;
  bool baseline = true;
  std::string variant;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // N x K; empty = DeepSeek-V3's
  std::vector<int64_t> ms;                          // empty = {1, 64, 128, 4096}
  int reps = 0;
};

// Block-scaled W8A8 over DeepSeek-V3's linear shapes (N x K in {2112x7168, 24576x1536, 32768x512,
// 7168x16384, 4096x7168, 7168x2048}), plus the activation quantizer alone ("fp8_quant" rows,
// whose GB/s counts x read, codes and fp32 GEMM operand written, scales written).
std::vector<Row> bench_fp8(Context& c, const Fp8BenchConfig& cfg, std::ostream* progress);

}  // namespace clq::bench
