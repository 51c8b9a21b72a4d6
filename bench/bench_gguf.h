#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace clq::bench {

struct GgufBenchConfig : DenseBenchConfig {};  // shapes: 4096x4096, 14336x4096; ms: {1, 16, 64, 256}

// GGUF Q4_0, Q8_0, Q4_K and Q6_K layers as GgufGemm runs them (GB/s counts the file's block
// bytes, or for Q4_0 the W4A16 layout's), and each Q4_0 case also on the affine layout of the
// gguf_gemm kernels: the measurement behind sending Q4_0 through W4A16 (bench/RESULTS.md).
std::vector<Row> bench_gguf(Context& c, const GgufBenchConfig& cfg, std::ostream* progress);

}  // namespace clq::bench
