// Host twins of kernels_cl/common/numeric.clh: the same integer algorithms, so host references
// and device kernels agree bit for bit (SPEC section 1). See that file for the rounding rules.
#pragma once
#include <cstdint>
#include <cstring>

namespace clq {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float fp16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
float e4m3_to_f32(uint8_t c);
float e5m2_to_f32(uint8_t c);

uint16_t f32_to_fp16(float f);
uint16_t f32_to_bf16(float f);
uint8_t f32_to_e4m3(float f);
uint8_t f32_to_e5m2(float f);

// Rounds positive finite fp32 bits (exponent field >= 1) to (mbits, bias); see numeric.clh.
uint32_t round_to_format(uint32_t a, int mbits, int bias);

inline uint32_t nibble(uint32_t word, uint32_t i) {
  return (word >> (4u * i)) & 0xFu;
}

// Activation/output element types of the ops.
enum class DType { kF32, kF16, kBF16 };
const char* dtype_name(DType t);
inline size_t dtype_size(DType t) {
  return t == DType::kF32 ? 4 : 2;
}
// Converts one element stored as `t` at p[i] to float / stores float as `t` (RNE).
float load_as_f32(const void* p, size_t i, DType t);
void store_from_f32(void* p, size_t i, DType t, float v);
// Rounds v as a store to `t` and back would (the reference's output rounding).
double round_to_dtype(double v, DType t);

}  // namespace clq
