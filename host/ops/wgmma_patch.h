// The sm_90a rewrite of the wgmma kernels (kernels_cl/common/wgmma.clh names the markers): PTX
// target sm_90a, each marker's instruction template, and the module-scope stage array of
// `smem_bytes` (at most kMaxWgmmaSmem, ptxas's static .shared limit on sm_90).
#pragma once
#include <cstddef>

#include "runtime/ptx_patch.h"

namespace clq {

constexpr size_t kMaxWgmmaSmem = 0x38c00;  // 227 KiB

PtxPatch wgmma_patch(size_t smem_bytes);

}  // namespace clq
