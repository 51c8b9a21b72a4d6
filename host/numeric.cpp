#include "host/numeric.h"

namespace clq {

float fp16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t(h) & 0x8000u) << 16;
  uint32_t e = (uint32_t(h) >> 10) & 0x1Fu;
  uint32_t m = uint32_t(h) & 0x3FFu;
  if (e == 0x1Fu) return bits_f32(s | 0x7F800000u | (m << 13));
  if (e == 0u) return bits_f32(s | f32_bits(float(m) * 0x1.0p-24f));
  return bits_f32(s | ((e + 112u) << 23) | (m << 13));
}

float bf16_to_f32(uint16_t b) {
  return bits_f32(uint32_t(b) << 16);
}

float e4m3_to_f32(uint8_t c) {
  uint32_t s = (uint32_t(c) & 0x80u) << 24;
  uint32_t e = (uint32_t(c) >> 3) & 0xFu;
  uint32_t m = uint32_t(c) & 0x7u;
  if (e == 0xFu && m == 0x7u) return bits_f32(s | 0x7FC00000u);
  if (e == 0u) return bits_f32(s | f32_bits(float(m) * 0x1.0p-9f));
  return bits_f32(s | ((e + 120u) << 23) | (m << 20));
}

float e5m2_to_f32(uint8_t c) {
  return fp16_to_f32(uint16_t(uint32_t(c) << 8));
}

uint32_t round_to_format(uint32_t a, int mbits, int bias) {
  int e = int(a >> 23) - 127;
  uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
  int shift;
  uint32_t base;
  if (e >= 1 - bias) {
    shift = 23 - mbits;
    base = uint32_t(e + bias - 1) << mbits;
  } else {
    shift = 23 - mbits + (1 - bias - e);
    base = 0;
    if (shift >= 25) return 0;
  }
  uint32_t q = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) q += 1u;
  return base + q;
}

uint16_t f32_to_fp16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t s = (x >> 16) & 0x8000u;
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(s | 0x7E00u | ((a >> 13) & 0x1FFu));
  if (a < 0x00800000u) return uint16_t(s);
  uint32_t c = (a >= 0x47800000u) ? 0x7C00u : round_to_format(a, 10, 15);
  return uint16_t(s | (c > 0x7C00u ? 0x7C00u : c));
}

uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 0x0040u);
  return uint16_t((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

uint8_t f32_to_e4m3(float f) {
  uint32_t x = f32_bits(f);
  uint32_t s = (x >> 24) & 0x80u;
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint8_t(s | 0x7Fu);
  if (a < 0x00800000u) return uint8_t(s);
  uint32_t c = (a >= 0x43E00000u) ? 0x7Eu : round_to_format(a, 3, 7);
  return uint8_t(s | (c > 0x7Eu ? 0x7Eu : c));
}

uint8_t f32_to_e5m2(float f) {
  uint32_t x = f32_bits(f);
  uint32_t s = (x >> 24) & 0x80u;
  uint32_t a = x & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint8_t(s | 0x7Eu);
  if (a < 0x00800000u) return uint8_t(s);
  uint32_t c = (a >= 0x47600000u) ? 0x7Bu : round_to_format(a, 2, 15);
  return uint8_t(s | (c > 0x7Bu ? 0x7Bu : c));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
  }
  return "?";
}

float load_as_f32(const void* p, size_t i, DType t) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kF16:
      return fp16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.0f;
}

void store_from_f32(void* p, size_t i, DType t, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::kF16:
      static_cast<uint16_t*>(p)[i] = f32_to_fp16(v);
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
      break;
  }
}

double round_to_dtype(double v, DType t) {
  float f = float(v);
  switch (t) {
    case DType::kF32:
      return f;
    case DType::kF16:
      return fp16_to_f32(f32_to_fp16(f));
    case DType::kBF16:
      return bf16_to_f32(f32_to_bf16(f));
  }
  return v;
}

}  // namespace clq
