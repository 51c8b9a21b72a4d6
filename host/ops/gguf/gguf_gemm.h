// GgufGemm: y[M][N] = x[M][K] @ W^T for a GGUF block-quantized linear layer (Q4_0, Q8_0, Q4_K,
// Q6_K; host/formats/gguf.h), x and y in fp16, bf16 or fp32. Chosen by measurement
// (bench/RESULTS.md, "GGUF"): every type is repacked at load, none is decoded from the file's
// blocks in a kernel. Q4_0 is exactly a symmetric GPTQ group of 32, so it runs through the
// W4A16 dispatcher and its variants (the row that ran is a w4a16_gemm row); Q8_0, Q4_K and Q6_K
// go to the affine layout of the gguf_gemm kernels (kernels_cl/gguf/). A dispatcher like
// W4A16Gemm: validate once, pick the row, let its launcher enqueue.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/caps/caps.h"
#include "host/formats/gguf.h"
#include "host/numeric.h"
#include "host/ops/launcher.h"
#include "host/ops/op_events.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "runtime/context.h"

namespace clq {

struct GgufProblem {
  static constexpr double kTolerance = 1e-3;  // as W4A16 (SPEC section 6): mean|y-ref| / mean|ref|
};

// The affine layout on the device (GgufAffine), uploaded on first use.
struct GgufDeviceLayer {
  uint32_t type = 0;
  int64_t N = 0, K = 0;
  int code_bits = 4, group = 32;
  cl::Buffer codes, so;
  cl::Buffer part;  // split-K partials, grown on demand
  size_t part_bytes = 0;
};

struct GgufCall : GemmIo {
  int splits = 0;  // gemv split-K: 0 = by device (none on a CPU)
};

struct GgufRunOptions {
  std::string variant;  // "" = the capability table's choice (or CLQ_VARIANT)
  // Q4_0 only: run the gguf_gemm kernels on the affine layout instead of W4A16 (tests, bench).
  bool native = false;
  int splits = 0;  // gguf_gemm/gemv split-K; 0 = by device (tests force it)
};

class GgufLauncher : public Launcher {
 public:
  using Launcher::Launcher;
  std::vector<std::string> ops() const override { return {"gguf_gemm"}; }
  virtual OpEvents enqueue(Context& c, GgufDeviceLayer& L, const GgufCall& io) const = 0;
};
const std::vector<const GgufLauncher*>& gguf_launchers();

class GgufGemm {
 public:
  // Repacks the layer (validated by validate_gguf_linear) on the host; Q4_0 is uploaded in the
  // W4A16 layout at once, the affine layout when a run first needs it.
  GgufGemm(Context& c, const GgufLinear& layer);
  int64_t K() const { return L_.K; }
  int64_t N() const { return L_.N; }
  // Whether a run with `opt` goes through W4A16 (Q4_0 without opt.native).
  bool via_w4a16(const GgufRunOptions& opt) const { return w4_ && !opt.native; }

  // Throws InvalidArgument/InvalidShape naming the rule and values; enqueues nothing.
  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const;
  // The row a run would take: a w4a16_gemm row for Q4_0, else a gguf_gemm row.
  const VariantRow& choose(int64_t M, const GgufRunOptions& opt) const;
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M, const GgufRunOptions& opt = {});

 private:
  void upload_affine();
  Context& c_;
  GgufDeviceLayer L_;
  GgufAffine host_;  // emptied once uploaded
  bool uploaded_ = false;
  std::unique_ptr<W4A16Gemm> w4_;
};

}  // namespace clq
