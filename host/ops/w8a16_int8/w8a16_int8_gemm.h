// W8A16Int8Gemm: y[M][N] = x[M][K] @ W[K][N] with W an 8-bit integer weight-only layer (GPTQ
// 8-bit v1/v2 with groups and act-order, compressed-tensors int8 per-channel or grouped), x and y
// in fp16, bf16 or fp32 (SPEC section 7). The W4A16 shape: can_implement -> run, every argument
// checked before anything is enqueued; the launchers (host/ops/w8a16_int8/<variant>.cpp) serve the
// w8a16_int8_gemm rows of the capability table. (The w8a16_gemm op is FP8 weight-only.)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/caps/caps.h"
#include "host/formats/w8.h"
#include "host/numeric.h"
#include "host/ops/op_events.h"
#include "host/ops/w4a16/w4a16_launcher.h"
#include "runtime/context.h"

namespace clq {

// One description of the op for tests and benchmarks.
struct W8A16Int8Problem {
  int64_t M = 1, N = 0, K = 0;
  int group_size = 128;
  DType act = DType::kF16;
  static constexpr double kTolerance = 1e-3;  // SPEC section 6 (int8 row): mean|y-ref| / mean|ref|
  double flops() const { return 2.0 * double(M) * double(N) * double(K); }
  // 1-byte codes, fp32 scales and u16 zeros (the kernel layout), activations in and outputs out.
  double bytes() const;
};

class W8A16Int8Launcher : public W4A16Launcher {
 public:
  using W4A16Launcher::W4A16Launcher;
  std::vector<std::string> ops() const override { return {"w8a16_int8_gemm"}; }
};
const std::vector<const W4A16Launcher*>& w8a16_int8_launchers();

class W8A16Int8Gemm : public IntLayerGemm {
 public:
  static constexpr const char* kOp = "w8a16_int8_gemm";  // its capability-table rows
  // Uploads the repacked layer (column blocks of the device's gemv geometry).
  W8A16Int8Gemm(Context& c, const W8Packed& packed);
};

// The op for an integer layer of either width: W4A16Gemm (repack_w4) for 4-bit codes,
// W8A16Int8Gemm (repack_w8) for 8-bit ones. The command line, the C API and Python build through it.
std::unique_ptr<IntLayerGemm> make_int_layer_gemm(Context& c, const W4Checkpoint& ck);
// The op make_int_layer_gemm builds for `ck` (W4A16Gemm::kOp or W8A16Int8Gemm::kOp), for callers
// that choose or report a variant without building it (clquant inspect).
const char* int_layer_op(const W4Checkpoint& ck);

}  // namespace clq
