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
#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq {

enum class Fp8Act {
  kBlockDynamic,   // per token, per 128 columns (DeepSeek-V3)
  kTensorDynamic,  // one scale from the whole activation tensor
  kTensorStatic,   // the checkpoint's input_scale
  kNone,           // weight-only (w8a16)
};
const char* fp8_act_name(Fp8Act a);

// Host twin of fp8/quant.cl, in fp32 with correctly rounded division.
struct Fp8ActHost {
  int64_t M = 0, K = 0, Kb = 0;
  std::vector<uint8_t> codes;  // [M][K]
  std::vector<float> scales;   // [M][Kb] (per-tensor modes repeat the one scale)
};
Fp8ActHost quantize_fp8_host(const void* x, DType xt, int64_t M, int64_t K, Fp8Act mode, float static_scale = 0);

// fp64 reference on the same quantized inputs (activations quantized by the host twin).
std::vector<double> fp8_gemm_reference(const Fp8Checkpoint& ck, const void* x, DType xt, int64_t M, Fp8Act mode);

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

class Fp8Quantizer {
 public:
  explicit Fp8Quantizer(Context& c) : c_(c) {}
  // Quantizes x [M][K] (fp16/bf16/fp32). kTensorStatic needs static_scale; kNone widens x.
  // padded_codes: code rows Kp = ceil(K/128)*128 long, +0 padded (the tensor-core GEMM's A operand).
  OpEvents run(const cl::Buffer& x, DType xt, int64_t M, int64_t K, Fp8Act mode, std::optional<float> static_scale,
               bool padded_codes = false);
  void read(std::vector<uint8_t>* codes, std::vector<float>* scales) const;  // unpadded runs only
  const cl::Buffer& codes() const { return codes_; }
  const cl::Buffer& xq() const { return xq_; }
  const cl::Buffer& scales() const { return scales_; }

 private:
  void grow(cl::Buffer& b, size_t& have, size_t need);
  Context& c_;
  int64_t M_ = 0, K_ = 0, Kb_ = 0;
  bool padded_ = false;
  cl::Buffer codes_, scales_, xq_, amax_, tensor_scale_;
  size_t codes_bytes_ = 0, scales_bytes_ = 0, xq_bytes_ = 0, amax_bytes_ = 0, tensor_scale_bytes_ = 0;
};

struct Fp8RunOptions {
  std::optional<Fp8Act> act;  // default: the layer's (block -> per-token groups; per-tensor ->
                              // static input_scale if the checkpoint has one, else dynamic)
  std::string variant;
  int splits = 0;
};

class Fp8Gemm {
 public:
  Fp8Gemm(Context& c, const Fp8Packed& packed);
  int64_t N() const { return N_; }
  int64_t K() const { return K_; }
  Fp8Act default_act() const;
  static const char* op_name(bool block, Fp8Act act);

  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes, Fp8Act act) const;
  const VariantRow& choose(int64_t M, Fp8Act act, const std::string& variant) const;
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M, const Fp8RunOptions& opt = {});
  const Fp8Quantizer& quantizer() const { return quant_; }
  int gemv_splits(int64_t M) const;
  int mma_splits(int64_t M) const;

 private:
  Context& c_;
  int64_t N_, K_, Kp_, Nb_, Kb_;
  bool block_;
  std::optional<float> input_scale_;
  int64_t Np_ = 0, block_n_ = 0;
  int cols_ = 4, rows_max_ = 4;
  cl::Buffer qw_, sw_, part_;
  size_t part_bytes_ = 0;
  Fp8Quantizer quant_;
};

}  // namespace clq
