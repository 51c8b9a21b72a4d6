// FP8 activation quantization on the device (kernels_cl/fp8/quant.cl) and its host twin.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "host/formats/fp8.h"
#include "host/numeric.h"
#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq {

class Fp8Quantizer {
 public:
  explicit Fp8Quantizer(Context& c) : c_(c) {}
  // Quantizes x [M][K] (fp16/bf16/fp32). kTensorStatic needs static_scale; kNone widens x.
  // padded_codes: code rows Kp = ceil(K/128)*128 long, +0 padded (the tensor-core GEMM's A
  // operand); xq() is then not written.
  OpEvents run(const cl::Buffer& x, DType xt, int64_t M, int64_t K, Fp8Act mode, std::optional<float> static_scale,
               bool padded_codes = false);
  void read(std::vector<uint8_t>* codes, std::vector<float>* scales) const;  // unpadded runs only
  // A padded-codes run's rows, Kp bytes each, padding included.
  void read_padded(std::vector<uint8_t>* codes, std::vector<float>* scales) const;
  const cl::Buffer& codes() const { return codes_; }
  const cl::Buffer& xq() const { return xq_; }
  const cl::Buffer& scales() const { return scales_; }
  // ue8m0 activation scales (DeepSeek-V3.1 `scale_fmt: ue8m0`): each dynamic scale rounded up to
  // a power of two, so every group still fits e4m3's range.
  void set_ue8m0_scales(bool on) { ue8m0_ = on; }
  bool ue8m0_scales() const { return ue8m0_; }
  // Kernel shape: one work-group of 128 per (group, token), one element per work-item and a
  // local-memory max (kWg; a decode row is a few groups, which one work-item each leaves as a
  // serial chain of loads), the same with 8 groups of a row per work-group, 8 columns per
  // work-item (kRows, per-token-group mode only; the others run kWg), or one work-item per
  // (group, token) walking its 128 values (kItem, CPUs). All give identical bits. Default: kRows
  // on GPUs, kItem on CPUs; CLQ_FP8_QUANT=rows|wg|item overrides.
  enum class Shape { kItem = 0, kWg = 1, kRows = 2 };
  void set_shape(Shape s) { wide_ = int(s); }
  void set_wide_groups(bool on) { wide_ = on ? int(Shape::kWg) : int(Shape::kItem); }  // kept for callers of 0.1
  bool wide_groups() const { return shape() != Shape::kItem; }
  Shape shape() const;

 private:
  void grow(cl::Buffer& b, size_t& have, size_t need);
  Context& c_;
  int64_t M_ = 0, K_ = 0, Kb_ = 0;
  bool padded_ = false;
  bool ue8m0_ = false;
  int wide_ = -1;  // -1: by device type / environment
  cl::Buffer codes_, scales_, xq_, amax_, tensor_scale_;
  size_t codes_bytes_ = 0, scales_bytes_ = 0, xq_bytes_ = 0, amax_bytes_ = 0, tensor_scale_bytes_ = 0;
};

}  // namespace clq
