// The benchmark harness every op reuses: warm-up, event-timed repetitions, medians, the
// device's measured copy bandwidth, same-run CLBlast baselines, and table/JSON output.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq::bench {

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int reps = 0;
  bool host_timed = false;  // event profiling gave zero or unusable timestamps (Mesa rusticl)
};

// Harness-wide switches set by the CLI before any case runs.
struct HarnessOptions {
  bool breakdown = false;  // record every launch of one call per case (Row::launches)
  bool replay = false;     // moe: also time each case as one recorded command buffer (Row::replay_*)
};
HarnessOptions& harness_options();

// One launch of a call: its name, its own device time, and its start after the call's first start.
struct LaunchTime {
  std::string name;
  double ms = 0, start_ms = 0;
};
// The per-launch times of a finished call (OpEvents::launches, in order).
std::vector<LaunchTime> launch_times(const std::vector<OpLaunch>& launches);

// Wall time per call: the host clock around `reps` back-to-back calls and the clFinish after
// them, divided by reps. That is what a caller issuing calls one after another sees: the
// device time plus whatever the host adds (enqueue cost, blocking reads, gaps it leaves).
double wall_ms_per_call(Context& c, const std::function<OpEvents()>& fn, int reps);

// Runs `fn` warmup times (compilation and first-touch stay out), then reps times, each timed by
// its events; returns the median. Where the device's event timestamps are unusable (a duration
// of zero, or under 1 us while the host saw far longer), every repetition is timed on the host
// around the enqueue and the wait instead, and the Timing says so.
Timing time_op(Context& c, const std::function<OpEvents()>& fn, int warmup, int reps);

// float4 copy over a buffer sized for the device; GB/s counts bytes read plus bytes written.
double measure_copy_gbps(Context& c);

// Same-run baselines through CLBlast (row-major, no transposes): C[M][N] = A[M][K] B[K][N].
// Operand values do not change GEMM speed, so the buffers hold a constant.
Timing clblast_sgemm(Context& c, int64_t M, int64_t N, int64_t K, int warmup, int reps);
Timing clblast_hgemm(Context& c, int64_t M, int64_t N, int64_t K, int warmup, int reps);  // needs fp16
// y[N] = x[K] W[K][N] (row-major W, transposed GEMV): the fair baseline at M = 1, where a GEMM
// call pays for a matrix-matrix kernel shape it does not need.
Timing clblast_sgemv(Context& c, int64_t N, int64_t K, int warmup, int reps);
Timing clblast_hgemv(Context& c, int64_t N, int64_t K, int warmup, int reps);  // needs fp16

// The knobs every dense-layer benchmark takes (the command line fills one and hands it on).
struct DenseBenchConfig {
  bool quick = false;
  bool baseline = true;
  std::string variant;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // N x K; empty = the op's standard list
  std::vector<int64_t> ms;                          // empty = the op's standard list
  int reps = 0;                                     // 0 = by size
};

struct Row {
  std::string op, label, variant;
  int64_t M = 0, N = 0, K = 0;
  double ms = 0, bytes = 0, flops = 0;  // ms: median of the event-timed repetitions
  double min_ms = 0, max_ms = 0;
  int reps = 0;
  double wall_ms = 0;                // host clock per call (wall_ms_per_call), 0 when not measured
  // --replay (cl_khr_command_buffer): the same call recorded once and replayed; device time
  // (median of the replay events) and wall time per replay; 0 when not measured.
  double replay_ms = 0, replay_wall_ms = 0;
  std::vector<LaunchTime> launches;  // --breakdown: each launch of one call
  double base_ms = 0;  // median; 0 when no baseline ran
  double base_min_ms = 0, base_max_ms = 0;
  std::string base_name;
  bool host_timed = false;  // see Timing
  double gbps() const { return ms > 0 ? bytes / (ms * 1e-3) / 1e9 : 0; }
  double tflops() const { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0; }
};

void print_table(std::ostream& out, const std::vector<Row>& rows, double copy_gbps);
nlohmann::json to_json(const Context& c, const std::vector<Row>& rows, double copy_gbps);

int reps_for(const Context& c, double approx_flops, int requested);

// Times one case of an op (`run`), fills a Row, and when asked times the same-run CLBlast
// baseline: the faster of CLBlast's GEMM and (at M = 1) GEMV, in fp32 or, where the device has
// fp16, fp16.
Row measure_case(Context& c, const std::string& op, const std::string& label, const std::string& variant, int64_t M,
                 int64_t N, int64_t K, double flops, double bytes, const std::function<OpEvents()>& run, bool baseline,
                 int requested_reps, std::ostream* progress);

}  // namespace clq::bench
