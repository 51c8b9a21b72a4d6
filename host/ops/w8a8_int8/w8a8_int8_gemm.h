// W8A8Int8Gemm: per-channel symmetric int8 weights with per-token dynamic int8 activations
// (SPEC section 7, the SmoothQuant / compressed-tensors int-quantized W8A8 row): the activations
// are quantized on the device (w8a8_int8_quant), then an int32-accumulating GEMM (a
// w8a8_int8_gemm variant: host/ops/w8a8_int8/<variant>.cpp) applies both scales in fp32. Every rule
// is checked before anything is enqueued.
#pragma once
#include <cstdint>
#include <vector>

#include "host/formats/w8.h"
#include "host/numeric.h"
#include "host/ops/op_events.h"
#include "host/ops/w8a8_int8/w8a8_int8_launcher.h"
#include "host/reference/w8a8_int8_reference.h"
#include "runtime/context.h"

namespace clq {

// K above this could overflow the int32 sums (|q_a * w| <= 128 * 128).
constexpr int64_t kW8A8MaxK = (int64_t(1) << 31) / (128 * 128) - 1;

// The signed weights of an 8-bit layer, which must be one group per column (per channel),
// symmetric (every zero 128 in stored units) and without act-order; otherwise InvalidArgument
// naming the rule (W8A8 int8 has no group scales or zero points to apply inside the sum).
Int8Weights int8_weights(const W8Packed& p);

struct W8A8Int8RunOptions {
  std::string variant;  // force a w8a8_int8_gemm variant ("" = the capability table's choice)
  int splits = 0;       // split-K ranges where the variant splits (0: its own choice)
};

class W8A8Int8Gemm {
 public:
  static constexpr const char* kOp = "w8a8_int8_gemm";  // its capability-table rows
  W8A8Int8Gemm(Context& c, const W8Packed& packed);
  W8A8Int8Gemm(const W8A8Int8Gemm&) = delete;  // the device layer points at w_
  W8A8Int8Gemm& operator=(const W8A8Int8Gemm&) = delete;
  int64_t K() const { return w_.K; }
  int64_t N() const { return w_.N; }
  const Int8Weights& weights() const { return w_; }

  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const;
  // Quantizes x [M][K] into the op's codes and scales (what run does first), rows of `row_words`
  // words (0: the portable length, K / 4 rounded up), zero padded.
  OpEvents quantize(const cl::Buffer& x, DType xt, int64_t M, int64_t row_words = 0);
  // The last quantize's codes [M][K] and scales [M].
  void read_act(std::vector<int8_t>* codes, std::vector<float>* scales) const;
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
               const W8A8Int8RunOptions& opt = {});

 private:
  Context& c_;
  Int8Weights w_;
  W8A8Int8DeviceLayer L_;
  int64_t M_ = 0, row_words_ = 0;  // the last quantize's rows
  cl::Buffer codes_, scales_;
  size_t codes_bytes_ = 0, scales_bytes_ = 0;
};

}  // namespace clq
