// Runs the conversion kernels (kernels_cl/convert.cl) over whole arrays: the device side of the
// bit-exactness checks. Codes travel as raw bits both ways.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/context.h"

namespace clq {

enum class NumFormat { kFp16, kBf16, kE4m3, kE5m2 };
const char* num_format_name(NumFormat f);
inline int num_format_bits(NumFormat f) {
  return (f == NumFormat::kFp16 || f == NumFormat::kBf16) ? 16 : 8;
}

// Decodes codes (low 8 or 16 bits used) to fp32 bit patterns on the device.
std::vector<uint32_t> device_decode(Context& c, NumFormat f, const std::vector<uint32_t>& codes);
// Encodes fp32 bit patterns to codes on the device.
std::vector<uint32_t> device_encode(Context& c, NumFormat f, const std::vector<uint32_t>& f32_bits);

// Host twins over the same arrays.
std::vector<uint32_t> host_decode(NumFormat f, const std::vector<uint32_t>& codes);
std::vector<uint32_t> host_encode(NumFormat f, const std::vector<uint32_t>& f32_bits);

}  // namespace clq
