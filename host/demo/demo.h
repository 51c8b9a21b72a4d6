// `clquant demo`: every op that exists, run once on this device against its host reference.
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "runtime/context.h"

namespace clq {

struct DemoResult {
  bool pass = false;
  double device_ms = -1;  // kernel time from events, or -1 when not timed
  std::string detail;
};

struct DemoCheck {
  std::string name;
  std::function<DemoResult(Context&, uint64_t seed)> run;
};

const std::vector<DemoCheck>& demo_checks();

// Prints the device, its capabilities and one line per check; returns the number of failures.
int run_demo(Context& c, std::ostream& out, uint64_t seed);

}  // namespace clq
