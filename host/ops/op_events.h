#pragma once
#include <vector>

#include "runtime/context.h"
#include "runtime/status.h"

namespace clq {
// The first and last kernel an op enqueued: its device time spans from the start of the first
// to the end of the last (event profiling), so gathers and reductions are counted.
struct OpEvents {
  cl::Event first, last;
  // Every launch of the call in order, with its name (Context::set_launch_log records them; only
  // filled when a caller asked for the breakdown, so an ordinary call pays nothing).
  std::vector<LaunchRecord> launches;
  double ms() const {
    cl_ulong a = 0, b = 0;
    check_cl(first.getProfilingInfo(CL_PROFILING_COMMAND_START, &a), "clGetEventProfilingInfo(START)");
    check_cl(last.getProfilingInfo(CL_PROFILING_COMMAND_END, &b), "clGetEventProfilingInfo(END)");
    return double(b - a) * 1e-6;
  }
};
}  // namespace clq
