// Per-device tuning parameters kept as data (CLBlast's lesson): the first row whose condition
// the probed features meet wins. Conditions use probed facts only (device type, features).
#pragma once
#include <cstdint>

#include "runtime/device.h"

namespace clq {

// One row per device class: the weight layout and work split of the register-tiled (gemv) kernels,
// which the int4, FP8 and MoE ops all use.
struct GemvTuning {
  const char* name;
  bool (*applies)(const DeviceFeatures&);
  // Columns per gemv work-item (1, 4, 8 or 16): 4 gives a GPU one 16-byte load per word row;
  // 16 gives a CPU one 512-bit vector of columns per work-item.
  int gemv_cols;
  // Weight words are stored in column blocks of this width, [N/block][Kp/8][block]: 0 means one
  // block of all N, [Kp/8][N], where neighbouring GPU work-items read neighbouring words. A CPU
  // work-item instead walks K; blocks keep its stream contiguous (no page-sized strides).
  int block_n;
  // Work-items in flight per compute unit the gemv split-K aims for.
  int items_per_cu;
  // Largest K slice (activation floats per row of x) one gemv work-item walks; 0 = no limit. On a
  // CPU the slice of x is re-read by every work-item, so it should stay in the L1 cache.
  int max_split_floats;
  // Work-group size of the gemv kernel (dimension 0). Small on a CPU so that even a narrow layer
  // yields enough work-groups to balance over the cores.
  int gemv_local;
  // Most rows of x one gemv work-item keeps in registers (4 or 8).
  int gemv_max_rows;
};

// How a register-tiled kernel stores a K-major weight of N columns on this device: columns padded
// to Np (a multiple of cols) and kept in column blocks of block_n (host/ops/layout.h).
struct GemvLayout {
  int cols = 4, max_rows = 4;
  int64_t Np = 0, block_n = 0;
};
GemvLayout gemv_layout(const GemvTuning& t, int64_t N);

// What a register-tiled launcher needs of the tuning row for a layer of N columns: the layout
// and the work split, copied once when the layer is uploaded.
struct GemvGeometry {
  int cols = 4, rows_max = 4;
  int64_t Np = 0, block_n = 0;
  int gemv_local = 64, items_per_cu = 0, max_split_floats = 0;
};
GemvGeometry gemv_geometry(const DeviceFeatures& f, int64_t N);

// CLQ_GEMV_TUNING=cpu|gpu|default forces a row (tests run every layout on any device).
const GemvTuning& gemv_tuning(const DeviceFeatures& f);

}  // namespace clq
