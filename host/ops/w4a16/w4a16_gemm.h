// W4A16Gemm: y[M][N] = x[M][K] @ W[K][N] with W a group-wise int4 layer (GPTQ v1/v2 with or
// without act-order, AWQ), x and y in fp16, bf16 or fp32. Follows can_implement -> run: every
// argument is checked before anything is enqueued.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/caps/caps.h"
#include "host/formats/w4.h"
#include "host/numeric.h"
#include "host/ops/op_events.h"
#include "host/ops/w4a16/w4a16_config.h"
#include "host/ops/w4a16/w4a16_launcher.h"
#include "runtime/context.h"

namespace clq {

// One description of the op, shared by tests and benchmarks (sizes, work, traffic, criterion).
struct W4A16Problem {
  int64_t M = 1, N = 0, K = 0;
  int group_size = 128;
  bool act_order = false;
  W4Format format = W4Format::kGptq;
  DType act = DType::kF16;
  static constexpr double kTolerance = 1e-3;  // SPEC section 6: mean|y-ref| / mean|ref|
  double flops() const { return 2.0 * double(M) * double(N) * double(K); }
  // Bytes one run must move: packed int4 weights, fp16 scales, zero points (1 byte each in the
  // kernel layout), activations in and outputs out.
  double bytes() const;
  std::string label() const;
};

// A dispatcher: validates the call once, picks the capability-table row, asks that row's
// launcher (host/ops/w4a16/<variant>.cpp) to check and enqueue, returns its events and the row.
class W4A16Gemm : public IntLayerGemm {
 public:
  static constexpr const char* kOp = "w4a16_gemm";  // its capability-table rows
  // Uploads the repacked layer to the device (the fragment layout too, where the mma probe passed).
  W4A16Gemm(Context& c, const W4Packed& packed);

  // Where the tensor-core variants are available (their weight layout was uploaded).
  bool has_fragment_layout() const { return L_.has_fragment_layout(); }
};

}  // namespace clq
