#pragma once
#include <ostream>
#include <vector>

#include "bench/harness.h"

namespace clq::bench {

struct QuantBenchConfig : DenseBenchConfig {};  // shapes: N x K; ms unused

// Online weight quantization (op weight_quant) of a bf16 N x K matrix, per method: int4 g128
// symmetric and asymmetric, int8 per channel, fp8-block. Device time is the kernel; wall time
// per call includes the upload, the finite check and the read back, as `clquant quantize` pays.
// GB/s counts the bf16 read and the codes and scales written.
std::vector<Row> bench_quant(Context& c, const QuantBenchConfig& cfg, std::ostream* progress);

}  // namespace clq::bench
