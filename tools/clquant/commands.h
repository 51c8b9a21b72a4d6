// Subcommands that drive ops: declared here, defined next to them in tools/clquant/.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "runtime/context.h"

namespace clq::cli {

struct GemmArgs {
  std::string weights, prefix, input, output, format, variant;
  int group_size = 0;  // 0: from quantize_config.json or the shapes
  bool check = false;
  std::string act_dtype;  // FP8 layers: fp16|bf16 selects weight-only (w8a16)
};
CLI::App* add_gemm_command(CLI::App& app, GemmArgs& args);
int run_gemm(Context& c, const GemmArgs& args);

struct QuantFp8Args {
  std::string input, output;
  bool per_tensor = false;
};
CLI::App* add_quant_fp8_command(CLI::App& app, QuantFp8Args& args);
int run_quant_fp8(Context& c, const QuantFp8Args& args);

struct MoeArgs {
  std::string weights, prefix, input, output, routing = "softmax", scoring = "sigmoid", format;
  int top_k = 0, n_group = 1, topk_group = 1, group_size = 0, block_size = 0;
  float routed_scaling = 1.0f;
  bool renormalize = false, check = false;
};
CLI::App* add_moe_command(CLI::App& app, MoeArgs& args);
int run_moe(Context& c, const MoeArgs& args);

struct BenchArgs {
  std::string op = "w4a16";
  bool quick = false, json = false, act_order = false, no_baseline = false, breakdown = false;
  std::string json_out, variant, shapes, ms;
  int reps = 0;
  int block_size = 0;
};
CLI::App* add_bench_command(CLI::App& app, BenchArgs& args);
int run_bench(Context& c, const BenchArgs& args);

}  // namespace clq::cli
