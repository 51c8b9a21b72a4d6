// Subcommands that drive ops: declared here, defined next to them in tools/clquant/.
#pragma once
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "host/formats/quantize.h"
#include "host/io/safetensors.h"
#include "runtime/context.h"
#include "runtime/safe_file.h"

namespace clq::cli {

// Numeric options are checked on the text the user typed: CLI11 alone turns '' into 0 and wraps
// "-1" into a huge unsigned seed. Each message names the allowed range.
inline CLI::Validator integer_in(long long lo, long long hi, bool allow_minus_one = false) {
  std::string desc = "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" + (allow_minus_one ? " or -1" : "");
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno == ERANGE || std::isspace((unsigned char)s[0]))
          return "'" + s + "' is not an integer";
        if ((v < lo || v > hi) && !(allow_minus_one && v == -1))
          return "'" + s + "' is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" +
                 (allow_minus_one ? " (or -1)" : "");
        return "";
      },
      desc);
}
inline CLI::Validator unsigned_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
          return "'" + s + "' is not a non-negative integer";
        errno = 0;
        std::strtoull(s.c_str(), nullptr, 10);
        return errno == ERANGE ? "'" + s + "' does not fit 64 bits" : "";
      },
      "UINT");
}
inline CLI::Validator positive_finite() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || !std::isfinite(v) || v <= 0 || v > 3.0e38)
          return "'" + s + "' is not a finite positive number";
        return "";
      },
      "FLOAT > 0");
}

// Every file a run reads (checkpoint index and shards, the quantization configs beside it, the
// activations): an --output naming any of them is refused before the run and again at the rename.
std::vector<FileId> run_inputs(const Checkpoint* ck, const SafetensorsFile* input);

struct GemmArgs {
  std::string weights, prefix, input, output, format, variant;
  int group_size = 0;  // 0: from quantize_config.json or the shapes
  int bits = 0;        // integer code width 4 or 8; 0: from the config or the tensors
  bool check = false;
  std::string act_dtype;  // FP8 layers: fp16|bf16 selects weight-only (w8a16)
  std::string quantize;   // int4|int8|fp8-block: quantize the dense P.weight on the device first
  bool asym = false;      // with --quantize: asymmetric integer codes
};
CLI::App* add_gemm_command(CLI::App& app, GemmArgs& args);
int run_gemm(Context& c, const GemmArgs& args);

struct QuantizeArgs {
  std::string input, output, method, layers;
  std::string max_shard_size = "5GB";  // parsed by parse_byte_size (host/model/quantize.h)
  int group_size = 0;  // 0: not given
  bool sym = false, asym = false, force = false, json = false;
};
CLI::App* add_quantize_command(CLI::App& app, QuantizeArgs& args);
int run_quantize(Context& c, const QuantizeArgs& args);

struct QuantFp8Args {
  std::string input, output;
  bool per_tensor = false;
  bool per_token = false;
};
CLI::App* add_quant_fp8_command(CLI::App& app, QuantFp8Args& args);
int run_quant_fp8(Context& c, const QuantFp8Args& args);

struct MoeArgs {
  // Routing options left at 0 / "" / false were not given: config.json's family rules apply.
  std::string weights, prefix, input, output, routing, scoring, format;
  int top_k = 0, n_group = 0, topk_group = 0, group_size = 0, block_size = 0;
  int bits = 0;         // integer experts' code width, 4 or 8 (0: the config's, else 4 / the tensors')
  std::string variant;  // fused_moe row: decode or general (default: the table's choice)
  float routed_scaling = 0.0f;
  bool renormalize = false, no_renormalize = false, check = false;
  std::string quantize;  // int4|fp8-block: dense experts quantized on the device first
  bool asym = false;
};
CLI::App* add_moe_command(CLI::App& app, MoeArgs& args);
int run_moe(Context& c, const MoeArgs& args);

struct InspectArgs {
  std::string checkpoint, format;
  int group_size = 0;
  bool json = false;
};
CLI::App* add_inspect_command(CLI::App& app, InspectArgs& args);
int run_inspect(Context& c, const InspectArgs& args);

struct VerifyArgs {
  std::string checkpoint, layers, format;
  int group_size = 0;
  int tokens = 5;
  uint64_t seed = 1;
  bool json = false;
};
CLI::App* add_verify_command(CLI::App& app, VerifyArgs& args);
int run_verify(Context& c, const VerifyArgs& args);

struct BenchArgs {
  std::string op = "w4a16";
  bool quick = false, json = false, act_order = false, no_baseline = false, breakdown = false, replay = false;
  std::string json_out, variant, shapes, ms;
  int reps = 0;
  int block_size = 0;
  std::string models;
  std::string experts;  // moe: every model's experts as int4 or int8 instead of its own kind ("" = own)
};
CLI::App* add_bench_command(CLI::App& app, BenchArgs& args);
int run_bench(Context& c, const BenchArgs& args);

}  // namespace clq::cli
