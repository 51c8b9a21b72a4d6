// clquant quantize: a dense checkpoint to a compressed-tensors int4/int8 or block-FP8 one, on the
// device (host/model/quantize.h). Parsing and printing only.
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "host/model/quantize.h"
#include "runtime/status.h"
#include "tools/clquant/commands.h"

namespace clq::cli {

CLI::App* add_quantize_command(CLI::App& app, QuantizeArgs& a) {
  auto* cmd = app.add_subcommand(
      "quantize", "quantize a bf16/fp16 checkpoint's linear weights on the device (round to nearest) and write a "
                  "compressed-tensors pack-quantized (int4, int8) or Hugging Face block-FP8 checkpoint folder");
  cmd->add_option("IN", a.input, "checkpoint: .safetensors, model.safetensors.index.json, or their folder")->required();
  cmd->add_option("OUT", a.output,
                  "output folder (new or empty; --force: existing) for model.safetensors and config.json")
      ->required();
  cmd->add_option("--method", a.method, "int4 | int8 | fp8-block")->required()->check(CLI::IsMember({"int4", "int8", "fp8-block"}));
  cmd->add_option("--group-size", a.group_size, "int4/int8: columns per scale along K, -1 for one per row (default 128)")
      ->check(integer_in(1, 1 << 30, /*allow_minus_one=*/true));
  auto* sym = cmd->add_flag("--sym", a.sym, "symmetric codes, no zero point (the default)");
  cmd->add_flag("--asym", a.asym, "int4/int8: asymmetric codes with a zero point per group")->excludes(sym);
  cmd->add_option("--layers", a.layers,
                  "ECMAScript regular expression searched in each layer name (a 2-D float tensor's name without "
                  "'.weight'); default: every 2-D *.weight except embeddings, lm_head, norms and MoE routers");
  cmd->add_option("--max-shard-size", a.max_shard_size,
                  "most tensor bytes per output file, e.g. 5GB (default, powers of 1000), 2GiB (powers of 1024) or "
                  "plain bytes; past it OUT holds model-0000i-of-0000N.safetensors and model.safetensors.index.json; "
                  "a larger tensor has a shard of its own")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            try {
              parse_byte_size(s, "");  // CLI11 puts the option's name in front
            } catch (const Error& e) {
              return e.what();
            }
            return "";
          },
          "SIZE"));
  cmd->add_flag("--force", a.force,
                "write into a non-empty OUT, replacing its config.json and weights (model.safetensors, "
                "model.safetensors.index.json and model-*-of-*.safetensors: the new set is written, the rest removed) "
                "and removing the .clq-XXXXXXXX.tmp temporaries a killed earlier run left");
  cmd->add_flag("--json", a.json, "print the report as JSON");
  return cmd;
}

namespace {
std::string sci(double v) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(3) << v;
  return s.str();
}
}  // namespace

int run_quantize(Context& c, const QuantizeArgs& a) {
  QuantizeCheckpointOptions o;
  o.input = a.input;
  o.output = a.output;
  o.spec = quant_spec_from(a.method, a.group_size, a.asym);
  o.layers = a.layers;
  o.force = a.force;
  o.max_shard_size = parse_byte_size(a.max_shard_size, "--max-shard-size");
  const QuantizeReport r = quantize_checkpoint(c, o);
  if (a.json) {
    std::cout << quantize_report_json(r, o.spec) << "\n";
    return 0;
  }
  size_t w = 5;
  for (auto& l : r.layers) w = std::max(w, l.layer.size());
  std::cout << std::left << std::setw(int(w)) << "layer" << "  " << std::setw(14) << "[N, K]" << "  " << std::setw(11)
            << "rel error" << "  " << std::setw(11) << "max abs err" << "  device ms\n";
  for (auto& l : r.layers) {
    const std::string shape = "[" + std::to_string(l.N) + ", " + std::to_string(l.K) + "]";
    std::cout << std::setw(int(w)) << l.layer << "  " << std::setw(14) << shape << "  " << std::setw(11) << sci(l.error.rel_fro())
              << "  " << std::setw(11) << sci(l.error.max_abs) << "  " << std::fixed << std::setprecision(3)
              << l.device_ms << std::defaultfloat << "\n";
  }
  std::cout << std::setw(int(w)) << ("overall (" + std::to_string(r.layers.size()) + " layers)") << "  " << std::setw(14) << ""
            << "  " << std::setw(11) << sci(r.total.rel_fro()) << "  " << std::setw(11) << sci(r.total.max_abs) << "\n";
  std::cout << "quantize: " << quant_spec_text(o.spec) << " (rel error = ||deq - w||_F / ||w||_F); wrote " << r.weights_path
            << " (" << r.layers.size() << " quantized layers, " << r.copied << " tensors copied";
  if (r.shards.size() > 1) std::cout << ", " << r.shards.size() << " shards, " << r.total_size << " tensor bytes";
  std::cout << ") and " << r.config_path << "\n";
  if (!r.removed.empty()) {
    std::cout << "quantize: removed the earlier";
    for (auto& f : r.removed) std::cout << " " << f;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace clq::cli
