// clquant: the command line over the library. Every library error arrives as clq::Error and is
// mapped to a documented exit code here (the library itself never exits).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "host/caps/caps.h"
#include "host/demo/demo.h"
#include "host/caps/report.h"
#include "host/version.h"
#include "runtime/context.h"
#include "runtime/status.h"
#include "tools/clquant/commands.h"

namespace {

const char* kExitCodes =
    "Exit codes:\n"
    "  0  success\n"
    "  1  a result disagreed with its reference (demo/verify)\n"
    "  2  bad command line (usage)\n"
    "  3  no OpenCL device found, or none matches --device / CLQ_DEVICE\n"
    "  4  invalid input: a shape, value or file breaks a documented rule\n"
    "  5  not supported on this device (feature missing, variant planned)\n"
    "  6  OpenCL error or kernel build failure\n"
    "  7  file I/O error\n"
    "  8  internal error\n";

int exit_code_for(clq::Status s) {
  using clq::Status;
  switch (s) {
    case Status::kSuccess:
      return 0;
    case Status::kVerificationFailed:
      return 1;
    case Status::kDeviceNotFound:
      return 3;
    case Status::kInvalidArgument:
    case Status::kInvalidShape:
    case Status::kFormatError:
      return 4;
    case Status::kNotSupported:
      return 5;
    case Status::kBuildFailed:
      return 6;
    case Status::kIoError:
      return 7;
    case Status::kCacheError:
    case Status::kInternal:
      return 8;
  }
  return 6;  // OpenCL error codes
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"clquant: quantized LLM kernels (W4A16, FP8, MoE) on any OpenCL device"};
  app.footer(std::string(kExitCodes) +
             "\nEnvironment: CLQ_DEVICE (device index or name substring), CLQ_VARIANT (op=variant,...),\n"
             "  CLQ_KERNEL_DIR (load kernels from a folder), CLQ_CACHE=off, CLQ_CACHE_DIR, CLQ_CACHE_TRACE=1\n");
  app.set_version_flag("--version", std::string("clquant ") + clq::version() + " (git " + clq::git_revision() + ")",
                       "print the version and the git revision it was built from, then exit");
  app.require_subcommand(1);
  std::string device;
  app.add_option(
      "-d,--device", device,
      "device index or case-insensitive name substring (default: CLQ_DEVICE, else first GPU, else first CPU)");

  bool json = false;
  auto* devices = app.add_subcommand("devices", "list every OpenCL platform and device with its key features");
  devices->add_flag("--json", json, "print JSON");

  bool caps_json = false;
  auto* caps =
      app.add_subcommand("caps", "print this device's features, the variant chosen per op and the support matrix");
  caps->add_flag("--json", caps_json, "print JSON");

  uint64_t seed = 0;
  auto* demo = app.add_subcommand("demo", "run every op once on the device against its host reference");
  demo->add_option("--seed", seed, "random seed (default: time based, printed)")->check(clq::cli::unsigned_integer());

  clq::cli::GemmArgs gemm_args;
  auto* gemm = clq::cli::add_gemm_command(app, gemm_args);
  clq::cli::QuantFp8Args quant_args;
  auto* quant = clq::cli::add_quant_fp8_command(app, quant_args);
  clq::cli::QuantizeArgs quantize_args;
  auto* quantize = clq::cli::add_quantize_command(app, quantize_args);
  clq::cli::MoeArgs moe_args;
  auto* moe = clq::cli::add_moe_command(app, moe_args);
  clq::cli::InspectArgs inspect_args;
  auto* inspect = clq::cli::add_inspect_command(app, inspect_args);
  clq::cli::VerifyArgs verify_args;
  auto* verify = clq::cli::add_verify_command(app, verify_args);
  clq::cli::BenchArgs bench_args;
  auto* bench = clq::cli::add_bench_command(app, bench_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (*bench) {
    // PoCL's worker threads migrate between cores unless pinned; on a 2-core machine that halves
    // throughput in about half of the runs. Pinning must be asked before the platform starts.
    ::setenv("POCL_AFFINITY", "1", /*overwrite=*/0);
  }

  try {
    if (*devices) {
      auto all = clq::list_devices();
      if (!device.empty() || std::getenv("CLQ_DEVICE")) clq::select_device(device);  // validate the selector
      if (json)
        std::cout << clq::devices_json(all).dump(2) << "\n";
      else
        clq::print_devices(std::cout, all);
      return 0;
    }
    clq::check_variant_env();
    auto ctx = clq::Context::open(device);
    if (*caps) {
      if (caps_json)
        std::cout << clq::caps_json(*ctx).dump(2) << "\n";
      else
        clq::print_caps(std::cout, *ctx);
      return 0;
    }
    if (*demo) {
      if (seed == 0) seed = uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
      int failures = clq::run_demo(*ctx, std::cout, seed);
      return failures ? 1 : 0;
    }
    if (*gemm) return clq::cli::run_gemm(*ctx, gemm_args);
    if (*quant) return clq::cli::run_quant_fp8(*ctx, quant_args);
    if (*quantize) return clq::cli::run_quantize(*ctx, quantize_args);
    if (*moe) return clq::cli::run_moe(*ctx, moe_args);
    if (*bench) return clq::cli::run_bench(*ctx, bench_args);
    if (*inspect) return clq::cli::run_inspect(*ctx, inspect_args);
    if (*verify) return clq::cli::run_verify(*ctx, verify_args);
  } catch (const clq::Error& e) {
    std::cerr << "clquant: error [" << clq::status_name(e.status()) << "]: " << e.what() << "\n";
    return exit_code_for(e.status());
  } catch (const std::exception& e) {
    std::cerr << "clquant: internal error: " << e.what() << "\n";
    return 8;
  }
  return 0;
}
