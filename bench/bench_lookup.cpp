#include "bench/bench_lookup.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <vector>

#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/synth/synth.h"

namespace clq::bench {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

LookupResult bench_lookup(Context& c, int64_t N, int64_t K, int reps, std::ostream* progress) {
  LookupResult r;
  r.N = N;
  r.K = K;
  reps = std::max(reps, 5);
  // The decode kernel's own file and options, so the hashed source is a real one.
  const std::string file = "w4a16/gemv.cl", entry = "w4a16_gemv";
  const std::string opts = "-DX_F16=1 -DY_F16=1 -DGEMV_M=1 -DVEC_COLS=4";
  auto time_lookups = [&](bool memo) {
    c.set_kernel_memo(memo);
    c.kernel(file, entry, opts);  // built (or loaded) once, outside the timing
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      double t0 = now_us();
      cl::Kernel k = c.kernel(file, entry, opts);
      t.push_back(now_us() - t0);
    }
    return median(t);
  };
  r.uncached_us = time_lookups(false);
  r.memo_us = time_lookups(true);
  if (progress) *progress << "kernel lookup: memo " << r.memo_us << " us, program-cache path " << r.uncached_us << " us\n";

  W4SynthSpec spec;
  spec.format = W4Format::kGptq;
  spec.K = K;
  spec.N = N;
  spec.group_size = 128;
  spec.seed = 7;
  W4Synth synth(spec);
  W4A16Gemm op(c, repack_w4(synth.checkpoint()));
  auto x = random_activations(1, K, DType::kF16, 1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(N) * 2);
  c.write(dx, x.data(), x.size());
  auto time_calls = [&](bool memo, double* device_us) {
    c.set_kernel_memo(memo);
    for (int i = 0; i < 3; ++i) op.run(dx, DType::kF16, dy, DType::kF16, 1);  // builds stay out
    c.finish();
    std::vector<double> wall, dev;
    for (int i = 0; i < reps; ++i) {
      double t0 = now_us();
      OpEvents ev = op.run(dx, DType::kF16, dy, DType::kF16, 1);
      c.finish();
      wall.push_back(now_us() - t0);
      cl_ulong s = 0, e = 0;
      ev.first.getProfilingInfo(CL_PROFILING_COMMAND_START, &s);
      ev.last.getProfilingInfo(CL_PROFILING_COMMAND_END, &e);
      dev.push_back(double(e - s) * 1e-3);
    }
    if (device_us) *device_us = median(dev);
    return median(wall);
  };
  r.call_uncached_us = time_calls(false, nullptr);
  r.call_memo_us = time_calls(true, &r.call_device_us);
  c.set_kernel_memo(true);
  return r;
}

void print_lookup(std::ostream& out, const LookupResult& r) {
  out << std::fixed << std::setprecision(2);
  out << "| what | kernel memo (now) | program-cache path (before the memo) |\n| --- | --- | --- |\n";
  out << "| one Context::kernel lookup, host us (median) | " << r.memo_us << " | " << r.uncached_us << " |\n";
  out << "| one W4A16 M=1 " << r.N << "x" << r.K << " call + finish, wall us (median) | " << r.call_memo_us << " | "
      << r.call_uncached_us << " |\n";
  out << "| that call's device time, us (events) | " << r.call_device_us << " | |\n";
}

}  // namespace clq::bench
