// The device layout of 8-bit integer weight-only layers (W8A16 int8, SPEC section 7): GPTQ 8-bit
// v1/v2 with groups and act-order, compressed-tensors int8 (pack-quantized or int-quantized,
// per-channel or grouped). The checkpoint side (tensors, validation, accessors, fp64 reference)
// is W4Checkpoint with bits = 8 (host/formats/w4.h): the rules are the int4 rules at another
// packing width.
#pragma once
#include <cstdint>
#include <vector>

#include "host/formats/w4.h"

namespace clq {

// Rows in group order as W4Packed's (group_rows with 4 rows to a word), K padded to a multiple of
// kW4RowAlign; see kernels_cl/w8a16_int8/gemv.cl for the picture.
struct W8Packed : GroupedRows {  // gstart and wgroup count 4-row words
  std::vector<uint32_t> qw;      // [Kp/4][N]: byte r%4 of word [r/4][n] = code (0..255) of packed row r
  // fp32, not fp16 as at 4 bits: compressed-tensors int8 checkpoints carry bf16/fp32 per-channel
  // scales that fp16 would round (GPTQ's fp16 scales widen exactly).
  std::vector<float> scales;     // [G][N]
  std::vector<uint16_t> zeros;   // [G][N] true zero, 0..256 (a v1 file storing 255 means 256)
  size_t device_bytes() const;   // what the kernels read for one pass over the weights
};

// Validates (validate_w4) and repacks; refuses a 4-bit checkpoint (NotSupported).
W8Packed repack_w8(const W4Checkpoint& ck);

}  // namespace clq
