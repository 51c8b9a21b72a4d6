// The sm_90a rewrite of the wgmma kernels (kernels_cl/common/wgmma.clh names the markers): PTX
// target sm_90a, each marker's instruction template, and the module-scope stage array of
// `smem_bytes` (at most kMaxWgmmaSmem, ptxas's static .shared limit on sm_90).
#pragma once
#include <cstddef>

#include "runtime/ptx_patch.h"

namespace clq {

constexpr size_t kMaxWgmmaSmem = 0x38c00;  // 227 KiB

// The operand type of the kernel's wgmma marker: e4m3 with fp32 sums, s8 with exact int32 sums, or
// 16-bit f16/bf16 with A from registers (CLQ_WG_MMA_RS_N128) and fp32 sums.
enum class WgmmaOperands { kE4m3, kS8, kF16Rs, kBf16Rs };

PtxPatch wgmma_patch(size_t smem_bytes, WgmmaOperands operands = WgmmaOperands::kE4m3);

}  // namespace clq
