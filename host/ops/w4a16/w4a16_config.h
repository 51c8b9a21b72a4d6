// Call options and the tensor-core launch shapes of W4A16Gemm. The structs' defaults are the one
// source of truth for the shapes: the launchers pass every field as -D, and the kernel files'
// own #ifndef defaults repeat these values only so each file compiles alone (tests/test_caps.cpp
// checks that they agree).
#pragma once
#include <string>

namespace clq {

struct W4A16RunOptions {
  std::string variant;  // "" = capability table (or CLQ_VARIANT)
  int splits = 0;       // split-K ranges (gemv, nv_mma_skinny, nv_mma_tiled); 0 = heuristic
};

// Launch shape of the nv_mma_skinny variant (kernels_cl/w4a16/nv_mma_skinny.cl).
struct NvSkinnyConfig {
  int nt = 1;           // 16-column tiles per work-group
  int mb = 1;           // 8-row B fragments per work-group
  int kw = 4;           // warps per work-group, splitting its K range
  int unroll = 1;       // 64-row chunks per pipeline batch (1, 2 or 4)
  int splits = 1;       // split-K ranges across work-groups
  bool direct = false;  // B fragments read from the rows of x: no gather pass
};

// Launch shape of the nv_mma_tiled variant (kernels_cl/w4a16/nv_mma_tiled.cl): wn x wm warps,
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

}  // namespace clq
