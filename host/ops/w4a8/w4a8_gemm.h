// W4A8Gemm: int4 group-wise weights (GPTQ, AWQ, compressed-tensors) with e4m3 activations
// quantized per token over all K (dynamic) or per tensor (dynamic, or the checkpoint's static
// input_scale); SPEC section 7. The portable row `w4a8_gemm/emulated` quantizes with the FP8
// quantizer, runs the int4 GEMM's own variants on the e4m3 codes (exact in fp32, fp16 and bf16,
// so the tensor-core variants multiply the same values) into fp32, and scales each row once
// (the scale is one per token or per tensor, so it factors out of the sum): W4A8 numerics at
// W4A16 speed. The native sm89 row (mma.sync e4m3 on the
// exact integers q - z) is planned.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "host/caps/caps.h"
#include "host/formats/fp8.h"
#include "host/formats/w4.h"
#include "host/ops/fp8/fp8_quant.h"
#include "host/ops/op_events.h"
#include "host/ops/w4a16/w4a16_launcher.h"
#include "runtime/context.h"

namespace clq {

struct W4A8RunOptions {
  Fp8Act act = Fp8Act::kTokenDynamic;  // kTokenDynamic, kTensorDynamic or kTensorStatic
  std::optional<float> input_scale;    // kTensorStatic
  std::string variant;                 // a w4a8_gemm row ("" = the table's choice)
  std::string int4_variant;            // the w4a16_gemm row the emulated path runs ("" = its choice)
};

class W4A8Gemm {
 public:
  // A 4-bit layer (W4Checkpoint::bits == 4), validated and uploaded.
  W4A8Gemm(Context& c, const W4Checkpoint& ck);
  int64_t K() const { return w_->K(); }
  int64_t N() const { return w_->N(); }
  // Throws InvalidArgument/InvalidShape naming the rule and values; enqueues nothing.
  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes, const W4A8RunOptions& o) const;
  const VariantRow& choose(int64_t M, const std::string& variant) const;
  // The events of the quantizer, the codes pass, the int4 GEMM and the row scaling; ev.row is the w4a8_gemm row.
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M, const W4A8RunOptions& o = {});
  // The int4 GEMM's row for M (what the emulated path runs underneath).
  const VariantRow& int4_row(int64_t M, const std::string& variant) const { return w_->choose(M, variant); }

 private:
  Context& c_;
  std::unique_ptr<IntLayerGemm> w_;
  Fp8Quantizer q_;
  cl::Buffer xd_, acc_;  // activation codes [M][K]; the int4 GEMM's fp32 sums [M][N]
  size_t xd_bytes_ = 0, acc_bytes_ = 0;
};

}  // namespace clq
