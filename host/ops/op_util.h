// Small helpers every op's launcher shares.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "host/numeric.h"
#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq::oputil {

// Scratch buffers only grow: a run that needs more replaces the buffer, one that needs less reuses
// it. Returns true when a new (uninitialized) buffer was allocated.
inline bool grow_scratch(Context& c, cl::Buffer& b, size_t& have, size_t need) {
  if (need <= have) return false;
  b = c.alloc(need);
  have = need;
  return true;
}

// Enqueues `kernel` and records the launch under `what` in `ev`.
inline void enqueue(Context& c, OpEvents& ev, const cl::Kernel& kernel, const cl::NDRange& global,
                    const cl::NDRange& local, const std::string& what) {
  ev.add(launch(c, kernel, global, local, what), what);
}

// Sums split-K partials part [splits][M][N] (fp32) into y [M][N] with one of the *_splitk_reduce
// kernels (arguments part, y, M, N, splits), recorded in `ev`.
inline void enqueue_splitk_reduce(Context& c, OpEvents& ev, cl::Kernel& reduce, const cl::Buffer& part,
                                  const cl::Buffer& y, int64_t M, int64_t N, int splits, const std::string& name) {
  set_args(reduce, part, y, cl_int(M), cl_int(N), cl_int(splits));
  enqueue(c, ev, reduce, cl::NDRange((size_t(N) + 63) / 64 * 64, size_t(M)), cl::NDRange(64, 1), name);
}

inline size_t round_up(size_t v, size_t m) {
  return (v + m - 1) / m * m;
}
inline std::string i2s(int64_t v) {
  return std::to_string(v);
}
// IN_DTYPE / OUT_DTYPE codes of kernels_cl/common/act_io.clh.
inline int dtype_code(DType t) {
  return t == DType::kF32 ? 0 : t == DType::kF16 ? 1 : 2;
}
inline std::string io_defines(DType xt, DType yt) {
  return "-DIN_DTYPE=" + std::to_string(dtype_code(xt)) + " -DOUT_DTYPE=" + std::to_string(dtype_code(yt));
}
// Rows of x per register-tiled work-item: no more than M needs, at most the device's budget.
inline int gemv_rows(int64_t M, int max_rows) {
  return M == 1 ? 1 : M == 2 ? 2 : (M <= 4 || max_rows <= 4) ? 4 : max_rows;
}

// A launch-shape knob from an environment variable of "key=value,..." pairs (CLQ_NV_SKINNY,
// CLQ_NV_TILED: sweeps), or `fallback` when the variable or the key is absent.
int env_knob(const char* var, const char* key, int fallback);

// Build option choosing the e4m3 decode of the FP8 register-tile kernels (common/fp8_vec.clh):
// the hardware cvt.rn.f16x2.e4m3x2 where the e4m3 mma probe passed (sm89+), else bit placement.
// CLQ_FP8_DECODE=bits|lut|ptx forces one (ptx is refused where the probe did not pass).
std::string fp8_decode_define(const DeviceFeatures& f);

// Input [M][K] of xt and output [M][N] of yt must fit their buffers (InvalidArgument otherwise).
void check_io_buffers(int64_t M, int64_t K, int64_t N, DType xt, DType yt, size_t x_bytes, size_t y_bytes);

}  // namespace clq::oputil
