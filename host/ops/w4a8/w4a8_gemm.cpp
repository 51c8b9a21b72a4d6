#include "host/ops/w4a8/w4a8_gemm.h"

#include <algorithm>
#include <cmath>

#include "host/ops/op_util.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"

namespace clq {

W4A8Gemm::W4A8Gemm(Context& c, const W4Checkpoint& ck) : c_(c), q_(c) {
  if (ck.bits != 4)
    fail(Status::kNotSupported, "W4A8 takes 4-bit weights; this layer has " + std::to_string(ck.bits) +
                                    "-bit codes (SPEC section 7: int4 weights x e4m3 activations)");
  w_ = make_int_layer_gemm(c, ck);
}

void W4A8Gemm::can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes,
                             const W4A8RunOptions& o) const {
  if (o.act != Fp8Act::kTokenDynamic && o.act != Fp8Act::kTensorDynamic && o.act != Fp8Act::kTensorStatic)
    fail(Status::kInvalidArgument, std::string("W4A8 activations are quantized per token or per tensor, not '") +
                                       fp8_act_name(o.act) + "'");
  if (o.act == Fp8Act::kTensorStatic && !(o.input_scale && std::isfinite(*o.input_scale) && *o.input_scale > 0))
    fail(Status::kInvalidArgument, "static per-tensor W4A8 activations need a positive finite input_scale");
  w_->can_implement(M, DType::kF32, DType::kF32, size_t(M) * size_t(K()) * 4, size_t(M) * size_t(N()) * 4);
  oputil::check_io_buffers(M, K(), N(), xt, yt, x_bytes, y_bytes);
  if (std::max(size_t(M) * size_t(K()), size_t(M) * size_t(N())) * 4 > c_.features().max_alloc)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " needs an activation-code or fp32-sum scratch above the "
                                "device's max allocation; split the batch");
}

const VariantRow& W4A8Gemm::choose(int64_t M, const std::string& variant) const {
  return select_variant("w4a8_gemm", c_.features(), M, variant);
}

OpEvents W4A8Gemm::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                       const W4A8RunOptions& o) {
  size_t xb = 0, yb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  y.getInfo(CL_MEM_SIZE, &yb);
  can_implement(M, xt, yt, xb, yb, o);
  const VariantRow& row = choose(M, o.variant);
  w_->choose(M, o.int4_variant);  // a bad int4 variant is refused before anything is enqueued
  oputil::grow_scratch(c_, xd_, xd_bytes_, size_t(M) * size_t(K()) * 4);
  oputil::grow_scratch(c_, acc_, acc_bytes_, size_t(M) * size_t(N()) * 4);
  const int64_t Kb = (K() + kFp8Block - 1) / kFp8Block;
  cl::Kernel codes = c_.kernel("fp8/quant.cl", "fp8_codes_rows", oputil::io_defines(xt, DType::kF32));
  cl::Kernel scale = c_.kernel("fp8/quant.cl", "fp8_scale_rows", oputil::io_defines(DType::kF32, yt));
  OpEvents ev = q_.run(x, xt, M, K(), o.act, o.input_scale);
  set_args(codes, q_.xq(), xd_, cl_int(M), cl_int(K()), cl_int(Kb));
  oputil::enqueue(c_, ev, codes, cl::NDRange(oputil::round_up(size_t(K()), 64), size_t(M)), cl::NDRange(64, 1),
                  "fp8_codes_rows");
  W4A16RunOptions wo;
  wo.variant = o.int4_variant;
  ev.append(w_->run(xd_, DType::kF32, acc_, DType::kF32, M, wo));
  set_args(scale, acc_, q_.scales(), y, cl_int(M), cl_int(N()), cl_int(Kb));
  oputil::enqueue(c_, ev, scale, cl::NDRange(oputil::round_up(size_t(N()), 64), size_t(M)), cl::NDRange(64, 1),
                  "fp8_scale_rows");
  ev.row = &row;
  return ev;
}

}  // namespace clq
