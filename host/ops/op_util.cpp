#include "host/ops/op_util.h"

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

}  // namespace clq::oputil
