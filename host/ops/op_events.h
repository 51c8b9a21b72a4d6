#pragma once
#include <string>
#include <vector>

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

}  // namespace clq
