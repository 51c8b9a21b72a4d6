#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace clq::bench {

struct MoeBenchConfig {
  bool quick = false;  // the three models at reduced sizes, for a CPU device
  std::vector<int64_t> ts;
  int reps = 0;
  // "decode" or "general" forces that fused_moe row (MoeRunOptions::variant); empty = the table's choice.
  std::string variant;
  int block_size = 0;  // MoeRunOptions::block_size
  std::vector<std::string> models;  // names to keep ("qwen3-30b-a3b", ...; quick names too); empty = all
  // "int4" or "int8": every model's experts synthesized as GPTQ integer experts (v2, groups of
  // 128) instead of its own kind; empty = each model's own (bf16, or block FP8 for DeepSeek-V3).
  std::string experts;
};

// Mixtral-8x7B (E 8, k 2, H 4096, I 14336, bf16), Qwen3-30B-A3B (E 128, k 8, H 2048, I 768, bf16),
// DeepSeek-V3 (E 256, k 8, H 7168, I 2048, 128x128 block FP8; or all three with int4 / int8
// experts, MoeBenchConfig::experts), T in {1, 16, 64, 4096}: the whole
// fused layer (routing from the router weight included). GB/s counts the expert weights the call
// actually touched (the distinct experts its routing chose), and M in the table is T.
std::vector<Row> bench_moe(Context& c, const MoeBenchConfig& cfg, std::ostream* progress);

}  // namespace clq::bench
