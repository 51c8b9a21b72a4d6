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

struct W4A16RunOptions {
  std::string variant;  // "" = capability table (or CLQ_VARIANT)
  int splits = 0;       // split-K ranges (gemv, nv_mma, nv_mma_skinny); 0 = heuristic
};

// Launch shape of the nv_mma_skinny variant (kernels_cl/w4a16_gemm_nv_skinny.cl).
struct NvSkinnyConfig {
  int nt = 1;      // 16-column tiles per work-group
  int mb = 1;      // 8-row B fragments per work-group
  int kw = 4;      // warps per work-group, splitting its K range
  int unroll = 1;  // 64-row chunks per pipeline batch (1, 2 or 4)
  int splits = 1;  // split-K ranges across work-groups
  bool direct = false;  // B fragments read from the rows of x: no gather pass
};

// Launch shape of the nv_mma_tiled variant (kernels_cl/w4a16_gemm_nv_tiled.cl): wn x wm warps,
// each tn 16-column tiles by mbw 8-row blocks.
struct NvTiledConfig {
  int tn = 4, wn = 2;   // tiles per warp, warps along N
  int mbw = 4, wm = 2;  // 8-row blocks per warp, warps along M
  int stages = 3;       // 64-row chunks staged in local memory (2..4)
  int splits = 1;       // split-K ranges (partials summed by w4a16_splitk_reduce)
  int gm = 8;           // row blocks per band of the work-group raster order
  bool direct = false;  // x read in place (16-bit, no act-order, K a multiple of 64): no gather
  int tiles() const { return tn * wn; }
  int rows() const { return 8 * mbw * wm; }
  int threads() const { return 32 * wn * wm; }
};

class W4A16Gemm {
 public:
  // Uploads the repacked layer to the device.
  W4A16Gemm(Context& c, const W4Packed& packed);

  int64_t K() const { return K_; }
  int64_t N() const { return N_; }
  int64_t G() const { return G_; }

  // Throws InvalidArgument/InvalidShape naming the rule and values; enqueues nothing.
  void can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const;
  const VariantRow& choose(int64_t M, const std::string& variant) const;

  // x: [M][K] of xt; y: [M][N] of yt. Returns the first/last events for timing.
  OpEvents run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
               const W4A16RunOptions& opt = {});

  // Split-K ranges the gemv variant would use for M rows (for tests and reports).
  int gemv_splits(int64_t M, const W4A16RunOptions& opt = {}) const;
  int mma_splits(int64_t M, const W4A16RunOptions& opt = {}) const;
  int mma_tiles(int64_t M) const;
  // Where the skinny tensor-core variant is available (its weight layout was uploaded).
  bool has_fragment_layout() const { return tiles_ > 0; }
  NvSkinnyConfig skinny_config(int64_t M, DType xt, const W4A16RunOptions& opt = {}) const;
  NvTiledConfig tiled_config(int64_t M, DType xt, const W4A16RunOptions& opt = {}) const;

 private:
  OpEvents run_skinny(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M, const VariantRow& row,
                      const W4A16RunOptions& opt);
  OpEvents run_tiled(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M, const VariantRow& row,
                     const W4A16RunOptions& opt);

  Context& c_;
  int64_t K_, N_, Kp_, G_;
  int64_t Np_ = 0, block_n_ = 0;  // device layout (host/caps/tuning.h)
  int cols_ = 4, rows_max_ = 4;
  cl::Buffer qw_, scales_, zeros_, perm_, gstart_, wgroup_;
  // Tensor-core fragment layout (nv_mma_skinny, nv_mma_tiled), uploaded where the mma probe passed.
  cl::Buffer qf_, sz_, wgroupf_, descf_;
  int64_t tiles_ = 0, chunks_ = 0;
  bool identity_perm_ = false;  // packed row r is activation column r (no act-order, no padding inside)
  cl::Buffer xp_, xw_, part_, count_;  // scratch, grown on demand
  size_t xp_bytes_ = 0, xw_bytes_ = 0, part_bytes_ = 0, count_bytes_ = 0;
};

}  // namespace clq
