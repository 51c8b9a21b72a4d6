#include "host/ops/op_util.h"

#include <cstdlib>

#include "runtime/status.h"

namespace clq::oputil {

void check_io_buffers(int64_t M, int64_t K, int64_t N, DType xt, DType yt, size_t x_bytes, size_t y_bytes) {
  const size_t need_x = size_t(M * K) * dtype_size(xt), need_y = size_t(M * N) * dtype_size(yt);
  if (x_bytes < need_x)
    fail(Status::kInvalidArgument, "input buffer holds " + std::to_string(x_bytes) + " bytes but M=" + i2s(M) +
                                       " x K=" + i2s(K) + " " + dtype_name(xt) + " needs " + std::to_string(need_x));
  if (y_bytes < need_y)
    fail(Status::kInvalidArgument, "output buffer holds " + std::to_string(y_bytes) + " bytes but M=" + i2s(M) +
                                       " x N=" + i2s(N) + " " + dtype_name(yt) + " needs " + std::to_string(need_y));
}

int env_knob(const char* var, const char* key, int fallback) {
  const char* e = std::getenv(var);
  if (!e) return fallback;
  std::string s(e), k = std::string(key) + "=";
  size_t at = 0;
  while (at < s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    if (s.compare(at, k.size(), k) == 0) return std::atoi(s.c_str() + at + k.size());
    at = end + 1;
  }
  return fallback;
}

std::string fp8_decode_define(const DeviceFeatures& f) {
  const char* e = std::getenv("CLQ_FP8_DECODE");
  const std::string want = e ? e : "";
  if (want == "lut") return " -DFP8_DECODE_LUT=1";
  if (want == "bits") return "";
  if (want == "ptx" && !f.nv_mma_e4m3)
    fail(Status::kNotSupported, "CLQ_FP8_DECODE=ptx needs the NVIDIA e4m3 probe (sm89+), which did not pass here");
  if (!want.empty() && want != "ptx")
    fail(Status::kInvalidArgument, "CLQ_FP8_DECODE='" + want + "' is not one of bits, lut, ptx");
  return f.nv_mma_e4m3 ? " -DFP8_DECODE_PTX=1" : "";
}

}  // namespace clq::oputil
