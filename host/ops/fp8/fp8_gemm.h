// FP8 GEMMs (SPEC section 4) over one repacked layer, following can_implement -> run:
//   block W8A8      weight_scale_inv blocks; activations quantized per token per 128 columns
//   per-tensor W8A8 weight_scale; activations quantized with a static input_scale or one
//                   dynamic per-tensor scale
//   W8A16           either weight kind; fp16/bf16 activations used as they are
// Activation quantization runs on the device (fp8/quant.cl); Fp8Quantizer exposes it alone.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host/caps/caps.h"
#include "host/formats/fp8.h"
#include "host/numeric.h"
#include "host/ops/fp8/fp8_launcher.h"
#include "host/ops/op_events.h"
#include "host/reference/fp8_reference.h"  // the op's fp64 reference, for its callers
#include "runtime/context.h"

namespace clq {


struct Fp8Problem {
  int64_t M = 1, N = 0, K = 0;
  Fp8Act act = Fp8Act::kBlockDynamic;
  DType act_dtype = DType::kBF16;
  static constexpr double kTolerance = 1e-3;  // SPEC section 6 (vLLM test_block_fp8)
  double flops() const { return 2.0 * double(M) * double(N) * double(K); }
  // e4m3 weights, fp32 block scales, activations in and outputs out.
  double bytes() const;
  std::string label() const;
};

struct Fp8RunOptions {
  std::optional<Fp8Act> act;  // default: the layer's (block -> per-token groups; per-tensor ->
                              // static input_scale if the checkpoint has one, else dynamic)
  std::string variant;
  int splits = 0;
};

// A dispatcher over the FP8 launchers (host/ops/fp8/<variant>.cpp): validates once, picks the
// row of fp8_block_gemm / fp8_tensor_gemm / w8a16_gemm, lets its launcher quantize and enqueue.
class Fp8Gemm {
 public:
  Fp8Gemm(Context& c, const Fp8Packed& packed);
  int64_t N() const { return L_.N; }
  int64_t K() const { return L_.K; }
  Fp8Act default_act() const;
  static const char* op_name(bool block, Fp8Act act);

  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes, Fp8Act act) const;
  const VariantRow& choose(int64_t M, Fp8Act act, const std::string& variant) const;
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M, const Fp8RunOptions& opt = {});
  const Fp8Quantizer& quantizer() const { return quant_; }
  const Fp8DeviceLayer& layer() const { return L_; }

 private:
  Context& c_;
  std::optional<float> input_scale_;
  Fp8DeviceLayer L_;
  Fp8Quantizer quant_;
};

}  // namespace clq
