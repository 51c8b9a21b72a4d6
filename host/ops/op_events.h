#pragma once
#include <string>
#include <vector>

#include "host/numeric.h"
#include "runtime/context.h"
#include "runtime/status.h"

namespace clq {

struct VariantRow;

// One kernel an op enqueued, by name (for `clquant bench --breakdown`).
struct OpLaunch {
  std::string name;
  cl::Event event;
};

// What an op enqueued for one call: every launch in order, and the first and last of them, so
// its device time spans from the start of the first to the end of the last (event profiling),
// gathers and reductions included; and the capability-table row that ran.
struct OpEvents {
  cl::Event first, last;
  std::vector<OpLaunch> launches;
  const VariantRow* row = nullptr;

  void add(const cl::Event& e, std::string name) {
    if (launches.empty()) first = e;
    last = e;
    launches.push_back({std::move(name), e});
  }
  // Appends another op's launches (an op made of ops: FP8 quantizer then GEMM).
  void append(const OpEvents& o) {
    for (auto& l : o.launches) add(l.event, l.name);
  }
  double ms() const {
    cl_ulong a = 0, b = 0;
    check_cl(first.getProfilingInfo(CL_PROFILING_COMMAND_START, &a), "clGetEventProfilingInfo(START)");
    check_cl(last.getProfilingInfo(CL_PROFILING_COMMAND_END, &b), "clGetEventProfilingInfo(END)");
    return double(b - a) * 1e-6;
  }
};

// The activations and output of one GEMM-like call: x [M][K] of xt in, y [M][N] of yt out.
struct GemmIo {
  const cl::Buffer* x = nullptr;
  DType xt = DType::kF16;
  const cl::Buffer* y = nullptr;
  DType yt = DType::kF16;
  int64_t M = 1;
  size_t x_bytes() const { return buffer_bytes(*x); }
  size_t y_bytes() const { return buffer_bytes(*y); }
  static size_t buffer_bytes(const cl::Buffer& b) {
    size_t n = 0;
    b.getInfo(CL_MEM_SIZE, &n);
    return n;
  }
};

}  // namespace clq
