// clquant bench: throughput of an op over the standard shapes, with the device's copy ceiling
// and a same-run baseline, as a table or JSON.
#include <iostream>
#include <sstream>

#include "bench/bench_fp8.h"
#include "bench/bench_gguf.h"
#include "bench/bench_lookup.h"
#include "bench/bench_moe.h"
#include "bench/bench_quant.h"
#include "bench/bench_w4a16.h"
#include "runtime/status.h"
#include "tools/clquant/commands.h"

namespace clq::cli {

CLI::App* add_bench_command(CLI::App& app, BenchArgs& a) {
  auto* cmd =
      app.add_subcommand("bench", "benchmark an op: median event time, GB/s, TFLOP/s, % of copy bandwidth, baseline");
  cmd->add_option("op", a.op,
                  "op to benchmark: w4a16, w8a16_int8 (GPTQ 8-bit weight-only), w8a8_int8 (per-token int8 "
                  "activations, activation quantization included), w4a8 (int4 weights, e4m3 activations per token, "
                  "quantizer included), weight_quant (online weight quantization per method), fp8 (block W8A8 and its activation quantizer), fp8_channel (per-channel "
                  "weight scales, activations per token), moe, gguf (Q4_0/Q8_0/Q4_K/Q6_K layers, and Q4_0 repacked as W4A16 beside "
                  "them), or lookup (host cost of a kernel lookup and of one W4A16 M=1 call, with and without the "
                  "kernel memo)")
      ->check(CLI::IsMember({"w4a16", "w8a16_int8", "w8a8_int8", "w4a8", "weight_quant", "fp8", "fp8_channel", "moe", "gguf", "lookup"}));
  cmd->add_flag("--quick", a.quick, "a subset sized for a CPU device");
  cmd->add_flag("--json", a.json, "print JSON instead of the table");
  cmd->add_option("--json-out", a.json_out, "also write the JSON to this file");
  cmd->add_option("--variant", a.variant, "force a kernel variant");
  cmd->add_option("--shapes", a.shapes, "N x K list, e.g. 4096x4096,28672x8192");
  cmd->add_option("--ms", a.ms, "M list (tokens T for moe), e.g. 1,16,4096");
  cmd->add_option("--reps", a.reps, "timed repetitions (default: by size)")->check(integer_in(1, 1000000));
  cmd->add_flag("--act-order", a.act_order, "w4a16, w8a16_int8: use act-order (g_idx) weights");
  cmd->add_flag("--no-baseline", a.no_baseline, "skip the CLBlast baseline");
  cmd->add_option("--block-size", a.block_size, "moe: rows per aligned block (0 = the op's choice)");
  cmd->add_option("--models", a.models, "moe: only these models, e.g. qwen3-30b-a3b,deepseek-v3 (default: all three)");
  cmd->add_option("--experts", a.experts,
                  "moe: synthesize every model's experts as int4 (GPTQ, groups of 128) or int8 (GPTQ 8-bit, groups "
                  "of 128) instead of its own kind (bf16 / block FP8)")
      ->check(CLI::IsMember({"int4", "int8"}));
  cmd->add_flag("--breakdown", a.breakdown,
                "also list each launch of one call per case (name, start, device time) in the table and JSON");
  cmd->add_flag("--replay", a.replay,
                "moe: also record each case's call once as a command buffer (cl_khr_command_buffer, where the "
                "device has it) and time its replays: device and wall time per call");
  return cmd;
}

namespace {
std::vector<int64_t> parse_list(const std::string& s, const char* what) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      size_t pos = 0;
      long long x = std::stoll(tok, &pos);
      if (pos != tok.size() || x < 1) throw std::invalid_argument(tok);
      v.push_back(x);
    } catch (const std::exception&) {
      fail(Status::kInvalidArgument, std::string(what) + ": '" + tok + "' is not a positive integer");
    }
  }
  return v;
}

// A shape is checked like the ops check theirs, before anything is synthesized: the host builds
// the weights (and a reference copy) first, so an absurd --shapes would end in bad_alloc.
void check_bench_shape(const Context& c, const std::string& op, int64_t N, int64_t K, const std::vector<int64_t>& ms) {
  const std::string shape = "--shapes " + std::to_string(N) + "x" + std::to_string(K);
  if (N % 8 || K % 8)
    fail(Status::kInvalidShape, shape + ": N and K must be multiples of 8 (the int4 and e4m3 packings)");
  constexpr int64_t kMaxDim = int64_t(1) << 31;
  if (N >= kMaxDim || K >= kMaxDim) fail(Status::kInvalidShape, shape + ": N and K must stay below 2^31");
  const uint64_t max_alloc = c.features().max_alloc, global = c.features().global_mem;
  // Weight bytes on the device: half a byte (int4) or one byte (e4m3, int8) per element.
  const uint64_t wbytes = op == "fp8" || op == "fp8_channel" || op == "w8a16_int8" || op == "w8a8_int8" ? uint64_t(N) * uint64_t(K)
                                                                                 : uint64_t(N) * uint64_t(K) / 2;
  if (wbytes > max_alloc || wbytes > global / 2)
    fail(Status::kInvalidArgument, shape + ": the weights need " + std::to_string(wbytes) +
                                       " bytes, above what this device can hold (max allocation " +
                                       std::to_string(max_alloc) + " bytes, memory " + std::to_string(global) + ")");
  for (int64_t M : ms) {
    uint64_t xb = 0, yb = 0;
    if (__builtin_mul_overflow(uint64_t(M), uint64_t(K) * 2, &xb) || __builtin_mul_overflow(uint64_t(M), uint64_t(N) * 2, &yb) ||
        xb > max_alloc || yb > max_alloc)
      fail(Status::kInvalidArgument, shape + " with M = " + std::to_string(M) +
                                         ": activations or outputs exceed the device's max allocation of " +
                                         std::to_string(max_alloc) + " bytes");
  }
}
}  // namespace

int run_bench(Context& c, const BenchArgs& a) {
  bench::W4A16BenchConfig cfg;
  cfg.quick = a.quick;
  cfg.act_order = a.act_order;
  cfg.bits = a.op == "w8a16_int8" ? 8 : 4;
  cfg.w8a8 = a.op == "w8a8_int8";
  cfg.w4a8 = a.op == "w4a8";
  cfg.baseline = !a.no_baseline;
  cfg.variant = a.variant;
  cfg.reps = a.reps;
  if (!a.ms.empty()) cfg.ms = parse_list(a.ms, "--ms");
  if (!a.shapes.empty()) {
    std::stringstream ss(a.shapes);
    std::string tok;
    while (std::getline(ss, tok, ',')) {
      auto x = tok.find('x');
      if (x == std::string::npos) fail(Status::kInvalidArgument, "--shapes: '" + tok + "' is not NxK");
      auto n = parse_list(tok.substr(0, x), "--shapes N"), k = parse_list(tok.substr(x + 1), "--shapes K");
      if (n.size() != 1 || k.size() != 1) fail(Status::kInvalidArgument, "--shapes: '" + tok + "' is not NxK");
      cfg.shapes.push_back({n.at(0), k.at(0)});
    }
  }
  if (!a.experts.empty() && a.op != "moe") fail(Status::kInvalidArgument, "--experts applies to 'bench moe'");
  if (a.op != "moe")
    for (auto [N, K] : cfg.shapes) check_bench_shape(c, a.op, N, K, cfg.ms.empty() ? std::vector<int64_t>{4096} : cfg.ms);
  std::cerr << "device: " << c.features().device_name << "\n";
  bench::harness_options().breakdown = a.breakdown;
  bench::harness_options().replay = a.replay;
  if (a.replay && !c.command_buffers())
    std::cerr << "--replay: " << c.features().device_name << " offers no cl_khr_command_buffer; no replay rows\n";
  if (a.op == "lookup") {
    const auto shape = cfg.shapes.empty() ? std::pair<int64_t, int64_t>{4096, 4096} : cfg.shapes.front();
    auto r = bench::bench_lookup(c, shape.first, shape.second, a.reps > 0 ? a.reps : 200, &std::cerr);
    bench::print_lookup(std::cout, r);
    return 0;
  }
  double copy = bench::measure_copy_gbps(c);
  std::cerr << "copy bandwidth: " << copy << " GB/s\n";
  std::vector<bench::Row> rows;
  if (a.op == "moe") {
    bench::MoeBenchConfig m;
    m.quick = cfg.quick;
    m.ts = cfg.ms;
    m.reps = cfg.reps;
    m.variant = cfg.variant;
    m.block_size = a.block_size;
    m.experts = a.experts;
    std::stringstream ms(a.models);
    for (std::string tok; std::getline(ms, tok, ',');)
      if (!tok.empty()) m.models.push_back(tok);
    rows = bench::bench_moe(c, m, &std::cerr);
  } else if (a.op == "fp8" || a.op == "fp8_channel") {
    bench::Fp8BenchConfig f;
    static_cast<bench::DenseBenchConfig&>(f) = cfg;
    f.channel = a.op == "fp8_channel";
    rows = bench::bench_fp8(c, f, &std::cerr);
  } else if (a.op == "weight_quant") {
    bench::QuantBenchConfig q;
    static_cast<bench::DenseBenchConfig&>(q) = cfg;
    rows = bench::bench_quant(c, q, &std::cerr);
  } else if (a.op == "gguf") {
    bench::GgufBenchConfig g;
    static_cast<bench::DenseBenchConfig&>(g) = cfg;
    rows = bench::bench_gguf(c, g, &std::cerr);
  } else {
    rows = bench::bench_w4a16(c, cfg, &std::cerr);
  }
  auto j = bench::to_json(c, rows, copy);
  if (!a.json_out.empty()) {
    const std::string text = j.dump(2) + "\n";
    write_file_atomic(a.json_out, {{text.data(), text.size()}}, {});
  }
  if (a.json)
    std::cout << j.dump(2) << "\n";
  else
    bench::print_table(std::cout, rows, copy);
  return 0;
}

}  // namespace clq::cli
