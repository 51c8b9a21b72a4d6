// Host cost of fetching a kernel and of one whole decode call: the per-context kernel memo
// against the program-cache path every call took before it (both in one run, same process).
#pragma once
#include <ostream>

#include "runtime/context.h"

namespace clq::bench {

struct LookupResult {
  double memo_us = 0, uncached_us = 0;            // median host time of one Context::kernel call
  double call_memo_us = 0, call_uncached_us = 0;  // median wall time of one W4A16 M=1 call + finish
  double call_device_us = 0;                      // its device time (events, first start to last end)
  int64_t N = 0, K = 0;
};

LookupResult bench_lookup(Context& c, int64_t N, int64_t K, int reps, std::ostream* progress);
void print_lookup(std::ostream& out, const LookupResult& r);

}  // namespace clq::bench
