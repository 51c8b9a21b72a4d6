// clquant inspect / clquant verify: a whole checkpoint's layers, listed or each run against its
// reference (host/model/). Parsing and printing only.
#include <unistd.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "host/model/inspect.h"
#include "host/model/report_json.h"
#include "host/model/verify.h"
#include "tools/clquant/commands.h"

namespace clq::cli {

namespace {

std::string human_bytes(uint64_t b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(u ? 1 : 0) << v << " " << unit[u];
  return s.str();
}

std::string sci(double v) {
  std::ostringstream s;
  s << std::scientific << std::setprecision(2) << v;
  return s.str();
}

std::string group_text(const LayerInfo& l) {
  return l.group_size == 0 ? "-" : l.group_size == -1 ? "K" : std::to_string(l.group_size);
}

// "w8a16_int8_gemm: gemv / tiled": the op names whose rows the variants are (two ops can share
// variant names).
std::string variant_text(const LayerInfo& l) { return l.op + ": " + l.variant_decode + " / " + l.variant_prefill; }

LoadOptions load_options(const std::string& format, int group_size) {
  LoadOptions lo;
  lo.format = format;
  lo.group_size = group_size;
  return lo;
}

}  // namespace

CLI::App* add_inspect_command(CLI::App& app, InspectArgs& a) {
  auto* cmd = app.add_subcommand(
      "inspect", "list every quantized linear layer and MoE block of a checkpoint and the variant each would run");
  cmd->add_option("checkpoint", a.checkpoint, "a .safetensors file, model.safetensors.index.json, or their folder")
      ->required();
  cmd->add_option("--format", a.format, "int4 layers: gptq | gptq_v2 | awq (default: the config beside the weights)");
  cmd->add_option("--group-size", a.group_size, "int4 layers: group size (default: config, else shapes)")
      ->check(integer_in(1, 1 << 30, /*allow_minus_one=*/true));
  cmd->add_flag("--json", a.json, "print JSON");
  return cmd;
}

int run_inspect(Context& c, const InspectArgs& a) {
  const CheckpointInventory inv = inspect_checkpoint(a.checkpoint, &c.features(), load_options(a.format, a.group_size));
  size_t refused = 0;
  for (const LayerInfo& l : inv.layers) refused += !l.error.empty();
  if (a.json) {
    std::cout << inventory_json(inv, c.features().device_name).dump(2) << "\n";
    return 0;
  }
  size_t w = 6, wv = 8;
  for (const LayerInfo& l : inv.layers) {
    w = std::max(w, l.prefix.size());
    wv = std::max(wv, variant_text(l).size() + 2);
  }
  std::cout << "checkpoint: " << inv.path << "\n"
            << "device: " << c.features().device_name << " (variants for M=1 / M=512)\n\n";
  std::cout << std::left << std::setw(int(w) + 2) << "layer" << std::setw(8) << "kind" << std::setw(30) << "shape"
            << std::setw(7) << "group" << std::setw(11) << "bytes" << std::setw(int(wv)) << "op: variant"
            << "format\n";
  for (const LayerInfo& l : inv.layers) {
    std::cout << std::left << std::setw(int(w) + 2) << l.prefix << std::setw(8) << l.kind_name();
    if (!l.error.empty()) {
      std::cout << "REFUSED [" << status_name(l.status) << "] " << l.error << "\n";
      continue;
    }
    std::cout << std::setw(30) << l.shape() << std::setw(7) << group_text(l) << std::setw(11) << human_bytes(l.bytes)
              << std::setw(int(wv)) << variant_text(l) << l.format << "\n";
  }
  std::cout << "\n"
            << inv.layers.size() << " layers (" << refused << " refused by the loader), " << inv.other_tensors
            << " other tensors (" << human_bytes(inv.other_bytes) << ", not run by clquant), "
            << human_bytes(inv.total_bytes) << " in all\n";
  return 0;
}

CLI::App* add_verify_command(CLI::App& app, VerifyArgs& a) {
  auto* cmd = app.add_subcommand("verify",
                                 "run every quantized linear layer and MoE block once on random activations against "
                                 "its fp64 reference (exit 1 on any failure)");
  cmd->add_option("checkpoint", a.checkpoint, "a .safetensors file, model.safetensors.index.json, or their folder")
      ->required();
  cmd->add_option("--layers", a.layers, "only layers whose prefix matches this regular expression (ECMAScript search)");
  cmd->add_option("--tokens", a.tokens, "rows of random activations per layer")->check(integer_in(1, 4096));
  cmd->add_option("--seed", a.seed, "random seed of the activations")->check(unsigned_integer());
  cmd->add_option("--format", a.format, "int4 layers: gptq | gptq_v2 | awq (default: the config beside the weights)");
  cmd->add_option("--group-size", a.group_size, "int4 layers: group size (default: config, else shapes)")
      ->check(integer_in(1, 1 << 30, /*allow_minus_one=*/true));
  cmd->add_flag("--json", a.json, "print the report as JSON (the progress still goes to stderr)");
  return cmd;
}

int run_verify(Context& c, const VerifyArgs& a) {
  VerifyOptions o;
  o.layers = a.layers;
  o.tokens = a.tokens;
  o.seed = a.seed;
  o.load = load_options(a.format, a.group_size);
  // A bar redrawn in place on a terminal; one line per layer otherwise (logs, pipes, CI).
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  o.progress = [&](size_t i, size_t n, const LayerInfo& l, const LayerCheck* done) {
    if (tty) {
      const size_t filled = (done ? i + 1 : i) * 30 / n;
      std::cerr << "\r\033[K[" << std::string(filled, '#') << std::string(30 - filled, '.') << "] "
                << (done ? i + 1 : i) << "/" << n << " " << l.prefix;
      if (done && i + 1 == n) std::cerr << "\n";
      std::cerr << std::flush;
    } else if (done) {
      std::cerr << "verify: " << i + 1 << "/" << n << " " << l.prefix << " " << (done->ok ? "ok" : "FAIL") << " ("
                << std::fixed << std::setprecision(1) << done->ms << " ms)\n"
                << std::defaultfloat;
    }
  };
  const VerifyReport rep = verify_checkpoint(c, a.checkpoint, o);
  if (a.json) {
    std::cout << verify_report_json(rep, c.features().device_name).dump(2) << "\n";
    return rep.ok() ? 0 : 1;
  }
  size_t w = 6;
  for (const LayerCheck& r : rep.layers) w = std::max(w, r.layer.prefix.size());
  std::cout << std::left << std::setw(int(w) + 2) << "layer" << std::setw(8) << "kind" << std::setw(11) << "rel err"
            << std::setw(11) << "max abs" << std::setw(11) << "tolerance" << std::setw(10) << "ms" << std::setw(6)
            << "result"
            << "  ran\n";
  for (const LayerCheck& r : rep.layers) {
    std::cout << std::left << std::setw(int(w) + 2) << r.layer.prefix << std::setw(8) << r.layer.kind_name();
    if (!r.error.empty()) {
      std::cout << "FAIL  " << r.error << "\n";
      continue;
    }
    std::ostringstream ms;
    ms << std::fixed << std::setprecision(1) << r.ms;
    std::cout << std::setw(11) << sci(r.err.rel_mean()) << std::setw(11) << sci(r.err.max_abs_err) << std::setw(11)
              << sci(r.tolerance) << std::setw(10) << ms.str() << std::setw(6) << (r.ok ? "ok" : "FAIL") << "  "
              << r.variant << (r.err.nan_count ? ", " + std::to_string(r.err.nan_count) + " NaN" : "") << "\n";
  }
  std::cout << "\n"
            << rep.layers.size() << " layers, " << rep.failed << " failed; worst rel err " << sci(rep.worst_rel)
            << (rep.worst_layer.empty() ? "" : " (" + rep.worst_layer + ")") << ", worst max abs err "
            << sci(rep.worst_abs) << "; " << std::fixed << std::setprecision(2) << rep.seconds << " s\n";
  if (!rep.ok()) {
    std::cout << "FAILED:";
    for (const LayerCheck& r : rep.layers)
      if (!r.ok) std::cout << " " << r.layer.prefix;
    std::cout << "\n";
  }
  return rep.ok() ? 0 : 1;
}

}  // namespace clq::cli
