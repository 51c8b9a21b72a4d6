#include "bench/harness.h"

#include <clblast.h>

#include <algorithm>
#include <chrono>
#include <iomanip>

#include "host/caps/report.h"
#include "runtime/status.h"

namespace clq::bench {

namespace {
Timing summarize(std::vector<double> t);
}

Timing time_op(Context& c, const std::function<OpEvents()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  c.finish();
  std::vector<double> t, host;
  bool unusable = false;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    OpEvents ev = fn();
    ev.last.wait();
    host.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    double ms = 0;
    try {
      ms = ev.ms();
    } catch (const Error&) {
      ms = 0;  // profiling info not available for this command: time it on the host
    }
    // rusticl reports start == end for every command: a zero that would divide the GB/s.
    if (!(ms > 0) || (ms < 1e-3 && host.back() > 0.1)) unusable = true;
    t.push_back(ms);
  }
  Timing r = summarize(unusable ? host : t);
  r.host_timed = unusable;
  return r;
}

HarnessOptions& harness_options() {
  static HarnessOptions o;
  return o;
}

std::vector<LaunchTime> launch_times(const std::vector<OpLaunch>& launches) {
  std::vector<LaunchTime> out;
  cl_ulong t0 = 0;
  for (size_t i = 0; i < launches.size(); ++i) {
    cl_ulong a = 0, b = 0;
    check_cl(launches[i].event.getProfilingInfo(CL_PROFILING_COMMAND_START, &a), "clGetEventProfilingInfo(START)");
    check_cl(launches[i].event.getProfilingInfo(CL_PROFILING_COMMAND_END, &b), "clGetEventProfilingInfo(END)");
    if (i == 0) t0 = a;
    out.push_back({launches[i].name, double(b - a) * 1e-6, double(int64_t(a - t0)) * 1e-6});
  }
  return out;
}

double wall_ms_per_call(Context& c, const std::function<OpEvents()>& fn, int reps) {
  c.finish();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  c.finish();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

double measure_copy_gbps(Context& c) {
  const auto& f = c.features();
  size_t bytes = f.is_gpu ? size_t(1) << 30 : size_t(256) << 20;
  bytes = std::min<size_t>(bytes, size_t(f.max_alloc / 2) / 16 * 16);
  const size_t n = bytes / 16;
  cl::Buffer a = c.alloc(bytes), b = c.alloc(bytes);
  c.fill_u32(a, 0x3f800000u, bytes);
  cl::Kernel k = c.kernel("bench/copy.cl", "bench_copy");
  set_args(k, a, b, cl_uint(n));
  auto fn = [&] {
    OpEvents e;
    e.first = e.last = launch(c, k, cl::NDRange((n + 255) / 256 * 256), cl::NDRange(256), "bench_copy");
    return e;
  };
  Timing t = time_op(c, fn, 2, f.is_gpu ? 20 : 5);
  return 2.0 * double(bytes) / (t.median_ms * 1e-3) / 1e9;
}

namespace {
Timing summarize(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  Timing r;
  r.reps = int(t.size());
  r.min_ms = t.front();
  r.max_ms = t.back();
  size_t n = t.size();
  r.median_ms = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  return r;
}

// 1 in CLBlast's scalar type: fp16 bits for half, 1.0f for float.
template <typename T>
T unit() {
  if constexpr (sizeof(T) == 2)
    return T(0x3C00);
  else
    return T(1.0f);
}

// Host clock around complete calls (each ends in clFinish), after a warm-up.
template <typename F>
Timing time_host_calls(const F& call, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    call();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return summarize(t);
}

// CLBlast may enqueue several kernels per call (padding, transposes, the GEMM) and its event
// covers only the last one, so the baseline is timed on the host around the call and a
// clFinish. That adds the launch latency, which the table states; it never hides work.
template <typename T>
Timing clblast_gemm(Context& c, int64_t M, int64_t N, int64_t K, int warmup, int reps, uint32_t fill) {
  cl::Buffer a = c.alloc(size_t(M * K) * sizeof(T)), b = c.alloc(size_t(K * N) * sizeof(T)),
             d = c.alloc(size_t(M * N) * sizeof(T));
  c.fill_u32(a, fill, size_t(M * K) * sizeof(T) / 4 * 4);
  c.fill_u32(b, fill, size_t(K * N) * sizeof(T) / 4 * 4);
  cl_command_queue q = c.queue()();
  auto call = [&] {
    const T one = unit<T>(), zero = T(0);
    auto st = clblast::Gemm<T>(clblast::Layout::kRowMajor, clblast::Transpose::kNo, clblast::Transpose::kNo, size_t(M),
                               size_t(N), size_t(K), one, a(), 0, size_t(K), b(), 0, size_t(N), zero, d(), 0, size_t(N),
                               &q, nullptr);
    if (st != clblast::StatusCode::kSuccess)
      fail(Status::kInternal, "CLBlast GEMM failed with status " + std::to_string(int(st)));
    c.finish();
  };
  return time_host_calls(call, warmup, reps);
}

// CLBlast's GEMV, timed like the GEMM above. A is W [K][N] row-major, used transposed: y = W^T x.
template <typename T>
Timing clblast_gemv(Context& c, int64_t N, int64_t K, int warmup, int reps, uint32_t fill) {
  cl::Buffer a = c.alloc(size_t(K * N) * sizeof(T)), x = c.alloc(size_t(K) * sizeof(T) + 4),
             y = c.alloc(size_t(N) * sizeof(T) + 4);
  c.fill_u32(a, fill, size_t(K * N) * sizeof(T) / 4 * 4);
  c.fill_u32(x, fill, size_t(K) * sizeof(T) / 4 * 4);
  cl_command_queue q = c.queue()();
  auto call = [&] {
    const T one = unit<T>(), zero = T(0);
    auto st = clblast::Gemv<T>(clblast::Layout::kRowMajor, clblast::Transpose::kYes, size_t(K), size_t(N), one, a(), 0,
                               size_t(N), x(), 0, 1, zero, y(), 0, 1, &q, nullptr);
    if (st != clblast::StatusCode::kSuccess)
      fail(Status::kInternal, "CLBlast GEMV failed with status " + std::to_string(int(st)));
    c.finish();
  };
  return time_host_calls(call, warmup, reps);
}
}  // namespace

Timing clblast_sgemv(Context& c, int64_t N, int64_t K, int warmup, int reps) {
  return clblast_gemv<float>(c, N, K, warmup, reps, 0x3c23d70au);
}
Timing clblast_hgemv(Context& c, int64_t N, int64_t K, int warmup, int reps) {
  if (!c.features().fp16) fail(Status::kNotSupported, "CLBlast HGEMV needs cl_khr_fp16");
  return clblast_gemv<cl_half>(c, N, K, warmup, reps, 0x211f211fu);
}

Timing clblast_sgemm(Context& c, int64_t M, int64_t N, int64_t K, int warmup, int reps) {
  return clblast_gemm<float>(c, M, N, K, warmup, reps, 0x3c23d70au /* 0.01f */);
}
Timing clblast_hgemm(Context& c, int64_t M, int64_t N, int64_t K, int warmup, int reps) {
  if (!c.features().fp16) fail(Status::kNotSupported, "CLBlast HGEMM needs cl_khr_fp16");
  return clblast_gemm<cl_half>(c, M, N, K, warmup, reps, 0x211f211fu /* 0.01 in fp16, twice */);
}

int reps_for(const Context& c, double flops, int requested) {
  if (requested > 0) return requested;
  // Enough repetitions for a stable median without letting a slow CPU device run for minutes.
  double est_s = flops / (c.features().is_gpu ? 2e13 : 5e10);
  return est_s > 1.0 ? 3 : est_s > 0.1 ? 5 : est_s > 0.01 ? 11 : 31;
}

Row measure_case(Context& c, const std::string& op, const std::string& label, const std::string& variant, int64_t M,
                 int64_t N, int64_t K, double flops, double bytes, const std::function<OpEvents()>& run, bool baseline,
                 int requested_reps, std::ostream* progress) {
  const int reps = reps_for(c, flops, requested_reps);
  Timing t = time_op(c, run, 2, reps);
  Row r;
  r.op = op;
  r.label = label;
  r.variant = variant;
  r.M = M;
  r.N = N;
  r.K = K;
  r.ms = t.median_ms;
  r.min_ms = t.min_ms;
  r.max_ms = t.max_ms;
  r.reps = t.reps;
  r.host_timed = t.host_timed;
  r.bytes = bytes;
  r.flops = flops;
  r.wall_ms = wall_ms_per_call(c, run, reps);
  if (harness_options().breakdown && !r.host_timed) {  // per-launch times need usable event timestamps
    c.finish();
    OpEvents ev = run();
    c.finish();
    r.launches = launch_times(ev.launches);
  }
  std::string base_tried;
  if (baseline) {
    // Dense fp32 (or fp16) on dequantized weights: what a device without a quantized kernel
    // would run, and the faster of what CLBlast offers for the shape: at M = 1 its GEMV and its
    // GEMM both run and the faster is the baseline (either alone can flatter the ratio).
    const int breps = std::max(3, reps / 2);
    std::string& tried = base_tried;
    auto take = [&](const Timing& b, const char* name) {
      tried += std::string(tried.empty() ? "" : ", ") + name + " " + std::to_string(b.median_ms) + " ms";
      if (r.base_ms > 0 && b.median_ms >= r.base_ms) return;
      r.base_ms = b.median_ms;
      r.base_min_ms = b.min_ms;
      r.base_max_ms = b.max_ms;
      r.base_name = name;
    };
    take(clblast_sgemm(c, M, N, K, 1, breps), "CLBlast SGEMM fp32 (wall)");
    if (M == 1) take(clblast_sgemv(c, N, K, 1, breps), "CLBlast SGEMV fp32 (wall)");
    if (c.features().fp16) {
      take(clblast_hgemm(c, M, N, K, 1, breps), "CLBlast HGEMM fp16 (wall)");
      if (M == 1) take(clblast_hgemv(c, N, K, 1, breps), "CLBlast HGEMV fp16 (wall)");
    }
  }
  if (progress) {
    *progress << "  " << op << " " << r.label << ": " << r.ms << " ms median, " << r.min_ms << "-" << r.max_ms
              << " ms over " << r.reps << ", " << r.wall_ms << " ms wall (" << r.variant << ")"
              << (r.host_timed ? " [host-timed]" : "");
    if (r.base_ms > 0) *progress << ", baseline " << r.base_ms << " ms (of " << base_tried << ")";
    *progress << "\n";
  }
  return r;
}

void print_table(std::ostream& out, const std::vector<Row>& rows, double copy_gbps) {
  out << "copy bandwidth (float4 copy, read+write): " << std::fixed << std::setprecision(1) << copy_gbps << " GB/s\n";
  out << "times: event-timed repetitions after two warm-up runs (kernel builds stay out); GB/s, TFLOP/s and 'vs base' "
         "use the median; wall: host clock per call around back-to-back calls and the finish\n";
  out << std::left << std::setw(58) << "case" << std::setw(8) << "variant" << std::right << std::setw(11) << "min ms"
      << std::setw(11) << "median ms" << std::setw(11) << "max ms" << std::setw(10) << "wall ms" << std::setw(10)
      << "GB/s" << std::setw(9) << "% copy" << std::setw(10) << "TFLOP/s" << std::setw(12) << "base ms" << std::setw(10)
      << "vs base"
      << "  baseline\n";
  for (auto& r : rows) {
    out << std::left << std::setw(58) << r.label << std::setw(8) << r.variant << std::right << std::fixed
        << std::setprecision(4) << std::setw(11) << r.min_ms << std::setw(11) << r.ms << std::setw(11) << r.max_ms
        << std::setw(10) << r.wall_ms << std::setprecision(1) << std::setw(10) << r.gbps() << std::setw(8)
        << 100.0 * r.gbps() / copy_gbps << "%" << std::setprecision(3) << std::setw(10) << r.tflops();
    if (r.base_ms > 0)
      out << std::setprecision(4) << std::setw(12) << r.base_ms << std::setprecision(2) << std::setw(9)
          << r.base_ms / r.ms << "x  " << r.base_name;
    out << (r.host_timed ? "  [host-timed]" : "") << "\n";
  }
  for (auto& r : rows)
    if (r.host_timed) {
      out << "[host-timed]: this device's event profiling gave zero or unusable timestamps, so those rows were timed\n"
             "  on the host around enqueue + wait (launch latency included; slower than event time)\n";
      break;
    }
  bool replayed = false;
  for (auto& r : rows) replayed |= r.replay_wall_ms > 0;
  if (replayed) {
    out << "\nreplayed (the call recorded once as a cl_khr_command_buffer; per call):\n";
    for (auto& r : rows)
      if (r.replay_wall_ms > 0)
        out << "  " << std::left << std::setw(56) << r.label << std::right << std::setprecision(4) << " device "
            << (r.replay_ms > 0 ? std::to_string(r.replay_ms) + " ms" : std::string("n/a (no usable replay timestamps)"))
            << ", wall " << r.replay_wall_ms << " ms (direct: device " << r.ms << " ms, wall " << r.wall_ms << " ms)\n";
  }
  bool any = false;
  for (auto& r : rows) any |= !r.launches.empty();
  if (!any) return;
  out << "\nbreakdown (one call; start after the call's first launch, device time of each launch):\n";
  for (auto& r : rows) {
    if (r.launches.empty()) continue;
    double sum = 0;
    for (auto& l : r.launches) sum += l.ms;
    out << r.label << ": " << r.launches.size() << " launches, " << std::setprecision(4) << sum
        << " ms busy of " << r.ms << " ms device, " << r.wall_ms << " ms wall";
    if (r.replay_wall_ms > 0) out << "; replayed: " << r.replay_ms << " ms device, " << r.replay_wall_ms << " ms wall";
    out << "\n";
    for (auto& l : r.launches)
      out << "    " << std::left << std::setw(28) << l.name << std::right << std::setprecision(1) << std::setw(10)
          << l.start_ms * 1e3 << " us" << std::setw(10) << l.ms * 1e3 << " us\n";
  }
}

nlohmann::json to_json(const Context& c, const std::vector<Row>& rows, double copy_gbps) {
  nlohmann::json j;
  j["device"] = features_json(c.features());
  j["copy_gbps"] = copy_gbps;
  nlohmann::json a = nlohmann::json::array();
  for (auto& r : rows) {
    nlohmann::json bd = nlohmann::json::array();
    for (auto& l : r.launches) bd.push_back({{"name", l.name}, {"start_ms", l.start_ms}, {"ms", l.ms}});
    a.push_back({{"op", r.op},
                 {"case", r.label},
                 {"variant", r.variant},
                 {"M", r.M},
                 {"N", r.N},
                 {"K", r.K},
                 {"median_ms", r.ms},
                 {"min_ms", r.min_ms},
                 {"max_ms", r.max_ms},
                 {"reps", r.reps},
                 {"wall_ms", r.wall_ms},
                 {"replay_ms", r.replay_ms},
                 {"replay_wall_ms", r.replay_wall_ms},
                 {"timing", r.host_timed ? "host" : "events"},
                 {"bytes", r.bytes},
                 {"flops", r.flops},
                 {"gbps", r.gbps()},
                 {"pct_copy", 100.0 * r.gbps() / copy_gbps},
                 {"tflops", r.tflops()},
                 {"baseline", r.base_name},
                 {"baseline_ms", r.base_ms},
                 {"baseline_min_ms", r.base_min_ms},
                 {"baseline_max_ms", r.base_max_ms},
                 {"speedup_vs_baseline", r.base_ms > 0 ? r.base_ms / r.ms : 0.0},
                 {"breakdown", bd}});
  }
  j["rows"] = a;
  return j;
}

}  // namespace clq::bench
