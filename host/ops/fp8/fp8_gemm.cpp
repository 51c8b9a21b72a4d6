#include "host/ops/fp8/fp8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "host/ops/layout.h"
#include "host/ops/op_util.h"
#include "host/caps/tuning.h"
#include "runtime/status.h"

namespace clq {

using oputil::io_defines;
using oputil::round_up;

double Fp8Problem::bytes() const {
  int64_t Nb = (N + 127) / 128, Kb = (K + 127) / 128;
  return double(N) * double(K) + double(Nb * Kb) * 4 + double(M) * double(K + N) * double(dtype_size(act_dtype));
}

std::string Fp8Problem::label() const {
  return std::to_string(N) + "x" + std::to_string(K) + " M=" + std::to_string(M);
}

// ---- quantizer ------------------------------------------------------------------------------

void Fp8Quantizer::grow(cl::Buffer& b, size_t& have, size_t need) {
  oputil::grow_scratch(c_, b, have, need);
}

OpEvents Fp8Quantizer::run(const cl::Buffer& x, DType xt, int64_t M, int64_t K, Fp8Act mode,
                           std::optional<float> static_scale, bool padded_codes) {
  if (M < 1 || K < 1)
    fail(Status::kInvalidArgument, "activation shape [" + std::to_string(M) + ", " + std::to_string(K) + "] is empty");
  size_t xb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  if (xb < size_t(M * K) * dtype_size(xt))
    fail(Status::kInvalidArgument, "input buffer holds " + std::to_string(xb) + " bytes but [" + std::to_string(M) +
                                       ", " + std::to_string(K) + "] " + dtype_name(xt) + " needs " +
                                       std::to_string(size_t(M * K) * dtype_size(xt)));
  if (mode == Fp8Act::kTensorStatic && !(static_scale && std::isfinite(*static_scale) && *static_scale > 0))
    fail(Status::kInvalidArgument, "static per-tensor quantization needs a positive finite input_scale");
  if (double(M) * double(K) >= 2147483647.0)
    fail(Status::kInvalidShape, "activation [M, K] exceeds 32-bit indices; split the batch");
  if (padded_codes && mode == Fp8Act::kNone)
    fail(Status::kInternal, "Fp8Quantizer: weight-only activations are widened into xq, which padded-codes runs do not keep");
  M_ = M;
  K_ = K;
  Kb_ = (K + kFp8Block - 1) / kFp8Block;
  const size_t Kp = size_t(Kb_) * kFp8Block;
  padded_ = padded_codes;
  grow(codes_, codes_bytes_, padded_codes ? size_t(M) * Kp : round_up(size_t(M * K), 4));
  grow(scales_, scales_bytes_, size_t(M * Kb_) * 4);
  grow(xq_, xq_bytes_, padded_codes ? 4 : size_t(M) * Kp * 4);  // the padded-codes kernels write no xq
  grow(tensor_scale_, tensor_scale_bytes_, mode == Fp8Act::kTokenDynamic ? size_t(M) * 4 : 4);
  if (mode == Fp8Act::kTensorDynamic || mode == Fp8Act::kTokenDynamic) grow(amax_, amax_bytes_, size_t(M * Kb_) * 4);
  const std::string defs = io_defines(xt, DType::kF32) + (padded_codes ? " -DCODES_PADDED=1" : "") +
                           (ue8m0_ ? " -DSCALE_UE8M0=1" : "");
  if (wide_ < 0) wide_ = int(shape());  // the environment is read once, not on every call
  const bool wide = wide_ != int(Shape::kItem);
  const bool rows = wide_ == int(Shape::kRows);
  const cl::NDRange grid = wide ? cl::NDRange(size_t(Kb_) * kFp8Block, size_t(M)) : cl::NDRange(round_up(size_t(Kb_), 16), size_t(M));
  const cl::NDRange local = wide ? cl::NDRange(kFp8Block, 1) : cl::NDRange(16, 1);
  const std::string wg = wide ? "_wg" : "";
  const cl_int Mi = cl_int(M), Ki = cl_int(K), Kbi = cl_int(Kb_);
  OpEvents ev;
  if (mode == Fp8Act::kBlockDynamic && rows) {
    // 8 groups of a row per work-group of 128 (kernels_cl/fp8/quant.cl).
    cl::Kernel k = c_.kernel("fp8/quant.cl", "fp8_quant_group_rows", defs + (K % 8 == 0 ? " -DQROW_VEC=1" : ""));
    set_args(k, x, codes_, scales_, xq_, Mi, Ki, Kbi);
    oputil::enqueue(c_, ev, k, cl::NDRange(size_t((Kb_ + 7) / 8) * kFp8Block, size_t(M)), cl::NDRange(kFp8Block, 1),
                    "fp8_quant_group_rows");
  } else if (mode == Fp8Act::kBlockDynamic) {
    cl::Kernel k = c_.kernel("fp8/quant.cl", "fp8_quant_group" + wg, defs);
    set_args(k, x, codes_, scales_, xq_, Mi, Ki, Kbi);
    oputil::enqueue(c_, ev, k, grid, local, "fp8_quant_group" + wg);
  } else if (mode == Fp8Act::kNone) {
    cl::Kernel k = c_.kernel("fp8/quant.cl", "fp8_widen_act", defs);
    set_args(k, x, scales_, xq_, Mi, Ki, Kbi);
    oputil::enqueue(c_, ev, k, grid, local, "fp8_widen_act");
  } else {
    cl::Kernel amax = c_.kernel("fp8/quant.cl", "fp8_group_amax" + wg, defs);
    cl::Kernel red = c_.kernel("fp8/quant.cl", "fp8_tensor_scale", defs);
    cl::Kernel qt = c_.kernel("fp8/quant.cl", "fp8_quant_tensor" + wg, defs);
    if (mode == Fp8Act::kTensorStatic) {
      float s = *static_scale;
      c_.write(tensor_scale_, &s, 4);
    } else if (mode == Fp8Act::kTokenDynamic) {
      cl::Kernel tok = c_.kernel("fp8/quant.cl", "fp8_token_scale", defs);
      set_args(amax, x, amax_, Mi, Ki, Kbi);
      oputil::enqueue(c_, ev, amax, grid, local, "fp8_group_amax" + wg);
      set_args(tok, amax_, tensor_scale_, Mi, Kbi);
      oputil::enqueue(c_, ev, tok, cl::NDRange(round_up(size_t(M), 64)), cl::NDRange(64), "fp8_token_scale");
    } else {
      set_args(amax, x, amax_, Mi, Ki, Kbi);
      oputil::enqueue(c_, ev, amax, grid, local, "fp8_group_amax" + wg);
      set_args(red, amax_, tensor_scale_, cl_int(M * Kb_));
      oputil::enqueue(c_, ev, red, cl::NDRange(256), cl::NDRange(256), "fp8_tensor_scale");
    }
    set_args(qt, x, tensor_scale_, codes_, scales_, xq_, Mi, Ki, Kbi, cl_int(mode == Fp8Act::kTokenDynamic));
    oputil::enqueue(c_, ev, qt, grid, local, "fp8_quant_tensor" + wg);
  }
  return ev;
}

Fp8Quantizer::Shape Fp8Quantizer::shape() const {
  if (wide_ >= 0) return Shape(wide_);
  const char* e = std::getenv("CLQ_FP8_QUANT");
  if (e && std::string(e) == "rows") return Shape::kRows;
  if (e && std::string(e) == "wg") return Shape::kWg;
  if (e && std::string(e) == "item") return Shape::kItem;
  if (e && *e) fail(Status::kInvalidArgument, std::string("CLQ_FP8_QUANT='") + e + "' is not one of rows, wg, item");
  return c_.features().is_cpu ? Shape::kItem : Shape::kRows;
}

void Fp8Quantizer::read(std::vector<uint8_t>* codes, std::vector<float>* scales) const {
  if (padded_) fail(Status::kInternal, "Fp8Quantizer::read after a padded-codes run");
  codes->resize(size_t(M_ * K_));
  scales->resize(size_t(M_ * Kb_));
  c_.read(codes_, codes->data(), codes->size());
  c_.read(scales_, scales->data(), scales->size() * 4);
}

void Fp8Quantizer::read_padded(std::vector<uint8_t>* codes, std::vector<float>* scales) const {
  if (!padded_) fail(Status::kInternal, "Fp8Quantizer::read_padded after an unpadded run");
  codes->resize(size_t(M_ * Kb_) * kFp8Block);
  scales->resize(size_t(M_ * Kb_));
  c_.read(codes_, codes->data(), codes->size());
  c_.read(scales_, scales->data(), scales->size() * 4);
}

// ---- GEMM -----------------------------------------------------------------------------------

Fp8Gemm::Fp8Gemm(Context& c, const Fp8Packed& p) : c_(c), input_scale_(p.input_scale), quant_(c) {
  quant_.set_ue8m0_scales(p.ue8m0_act_scales);
  if (p.qw.size() != size_t(p.Kp / 4 * p.N) || p.sw.size() != size_t(p.Nb * p.Kb) || p.Kp != p.Kb * kFp8Block)
    fail(Status::kInvalidArgument,
         "Fp8Packed arrays disagree with N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) + " (use repack_fp8)");
  L_.N = p.N;
  L_.K = p.K;
  L_.Kp = p.Kp;
  L_.Nb = p.Nb;
  L_.Kb = p.Kb;
  L_.block = p.block;
  L_.g = gemv_geometry(c.features(), L_.N);
  if (double(p.Kp / 4) * double(L_.g.Np) >= 2147483647.0)
    fail(Status::kInvalidShape, "FP8 layer N=" + std::to_string(L_.N) + " x K=" + std::to_string(L_.K) +
                                    " is too large for 32-bit word indices");
  std::vector<uint32_t> qw = column_blocks(p.qw.data(), L_.Kp / 4, L_.N, L_.g.Np, L_.g.block_n);
  L_.qw = c_.alloc(qw.size() * 4, CL_MEM_READ_ONLY);
  c_.write(L_.qw, qw.data(), qw.size() * 4);
  L_.sw = c_.alloc(p.sw.size() * 4, CL_MEM_READ_ONLY);
  c_.write(L_.sw, p.sw.data(), p.sw.size() * 4);
  if (!p.sn.empty()) {
    if (p.sn.size() != size_t(p.N)) fail(Status::kInvalidArgument, "Fp8Packed: per-channel scales need N entries");
    L_.channel = true;
    L_.sn = c_.alloc(p.sn.size() * 4, CL_MEM_READ_ONLY);
    c_.write(L_.sn, p.sn.data(), p.sn.size() * 4);
  }
}

Fp8Act Fp8Gemm::default_act() const {
  if (L_.channel && !input_scale_) return Fp8Act::kTokenDynamic;
  if (L_.block) return Fp8Act::kBlockDynamic;
  return input_scale_ ? Fp8Act::kTensorStatic : Fp8Act::kTensorDynamic;
}

const char* Fp8Gemm::op_name(bool block, Fp8Act act) {
  if (act == Fp8Act::kNone) return "w8a16_gemm";
  return block ? "fp8_block_gemm" : "fp8_tensor_gemm";
}

void Fp8Gemm::can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes, Fp8Act act) const {
  if (M < 1) fail(Status::kInvalidArgument, "M = " + std::to_string(M) + ": need at least one row of activations");
  if (L_.block && (act == Fp8Act::kTensorDynamic || act == Fp8Act::kTensorStatic))
    fail(Status::kInvalidArgument,
         std::string("activation mode '") + fp8_act_name(act) + "' does not fit block-scaled weights");
  if (!L_.block && act == Fp8Act::kBlockDynamic)
    fail(Status::kInvalidArgument,
         "per-token-group activations need block-scaled weights; this layer has a per-tensor weight_scale");
  if (act == Fp8Act::kTensorStatic && !input_scale_)
    fail(Status::kInvalidArgument,
         "static activation quantization needs the checkpoint's input_scale, which this layer lacks");
  if (act == Fp8Act::kNone && xt == DType::kF32)
    fail(Status::kInvalidArgument, "weight-only FP8 (w8a16) takes fp16 or bf16 activations, not f32");
  if (double(M) * double(L_.Kp) >= 2147483647.0 || double(M) * double(L_.N) >= 2147483647.0)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " exceeds 32-bit element indices; split the batch");
  oputil::check_io_buffers(M, L_.K, L_.N, xt, yt, x_bytes, y_bytes);
  if (size_t(M) * size_t(L_.Kp) * 4 > c_.features().max_alloc)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) +
                                    " needs an activation scratch above the device's max allocation; split the batch");
}

const VariantRow& Fp8Gemm::choose(int64_t M, Fp8Act act, const std::string& variant) const {
  return select_variant(op_name(L_.block, act), c_.features(), M, variant);
}

OpEvents Fp8Gemm::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                      const Fp8RunOptions& opt) {
  const Fp8Act act = opt.act.value_or(default_act());
  Fp8Call call;
  static_cast<GemmIo&>(call) = GemmIo{&x, xt, &y, yt, M};
  call.act = act;
  can_implement(M, xt, yt, call.x_bytes(), call.y_bytes(), act);
  const VariantRow& row = choose(M, act, opt.variant);
  const Fp8Launcher* l = fp8_launcher(row.variant);
  if (!l) fail(Status::kInternal, std::string(row.op) + " row '" + row.variant + "' has no launcher");
  call.input_scale = input_scale_;
  call.splits = opt.splits;
  if (!L_.channel) {
    l->can_implement(L_, call, c_.features()).raise_if_refused();
    OpEvents ev = l->enqueue(c_, L_, quant_, call);
    ev.row = &row;
    return ev;
  }
  // Per-channel scales: the variant writes fp32 with unit weight scales, then one pass scales
  // each column and rounds once (the kernels keep one weight scale per 128 rows per block).
  const size_t acc_bytes = size_t(M) * size_t(L_.N) * 4;
  if (acc_bytes > c_.features().max_alloc)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " needs a per-channel accumulator above the device's "
                                "max allocation; split the batch");
  oputil::grow_scratch(c_, L_.acc, L_.acc_bytes, acc_bytes);
  call.y = &L_.acc;
  call.yt = DType::kF32;
  l->can_implement(L_, call, c_.features()).raise_if_refused();
  cl::Kernel scale = c_.kernel("fp8/gemv.cl", "fp8_channel_scale", io_defines(DType::kF32, yt));
  OpEvents ev = l->enqueue(c_, L_, quant_, call);
  set_args(scale, L_.acc, L_.sn, y, cl_int(M), cl_int(L_.N));
  oputil::enqueue(c_, ev, scale, cl::NDRange(round_up(size_t(L_.N), 64), size_t(M)), cl::NDRange(64, 1),
                  "fp8_channel_scale");
  ev.row = &row;
  return ev;
}

}  // namespace clq
