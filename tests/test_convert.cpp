// SPEC section 1: every code of fp16, bf16, e4m3 and e5m2 decodes identically on the device and
// on the host; encoding agrees on boundary cases and on over a million random fp32 values; and
// both agree with an independent oracle (nearest representable value found by search in fp64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "host/numeric.h"
#include "host/ops/convert.h"
#include "tests/test_util.h"

using namespace clq;

namespace {
const NumFormat kFormats[] = {NumFormat::kFp16, NumFormat::kBf16, NumFormat::kE4m3, NumFormat::kE5m2};

// Exact value of a code, written from the format definitions (independent of numeric.clh).
double oracle_decode(NumFormat f, uint32_t code) {
  int ebits, mbits, bias, total;
  switch (f) {
    case NumFormat::kFp16:
      ebits = 5;
      mbits = 10;
      bias = 15;
      total = 16;
      break;
    case NumFormat::kBf16:
      ebits = 8;
      mbits = 7;
      bias = 127;
      total = 16;
      break;
    case NumFormat::kE4m3:
      ebits = 4;
      mbits = 3;
      bias = 7;
      total = 8;
      break;
    default:
      ebits = 5;
      mbits = 2;
      bias = 15;
      total = 8;
      break;
  }
  bool neg = (code >> (total - 1)) & 1;
  uint32_t e = (code >> mbits) & ((1u << ebits) - 1), m = code & ((1u << mbits) - 1);
  double v;
  if (f == NumFormat::kE4m3) {
    if (e == 15 && m == 7) return NAN;
  } else if (e == (1u << ebits) - 1) {
    return m ? NAN : (neg ? -INFINITY : INFINITY);
  }
  if (e == 0)
    v = std::ldexp(double(m), 1 - bias - mbits);
  else
    v = std::ldexp(double((1u << mbits) + m), int(e) - bias - mbits);
  return neg ? -v : v;
}

// Nearest-even rounding by search over the sorted non-negative finite codes, with the
// overflow rule of each format: IEEE types round past max to inf; fp8 types saturate.
struct Oracle {
  NumFormat f;
  std::vector<std::pair<double, uint32_t>> pos;  // value, code (sign bit clear), ascending
  uint32_t sign_bit;
  explicit Oracle(NumFormat fmt) : f(fmt) {
    int bits = num_format_bits(fmt);
    sign_bit = 1u << (bits - 1);
    for (uint32_t c = 0; c < sign_bit; ++c) {
      double v = oracle_decode(fmt, c);
      if (std::isfinite(v)) pos.push_back({v, c});
    }
    std::sort(pos.begin(), pos.end());
    if (fmt == NumFormat::kFp16) pos.push_back({65536.0, 0x7C00});  // inf, one step past max
    if (fmt == NumFormat::kBf16) pos.push_back({std::ldexp(1.0, 128), 0x7F80});
  }
  uint32_t encode(float x) const {
    double a = std::fabs(double(x));
    uint32_t s = std::signbit(x) ? sign_bit : 0;
    if (f == NumFormat::kE4m3 || f == NumFormat::kE5m2)
      a = std::min(a, pos.back().first);
    else if (a >= pos.back().first)
      return s | pos.back().second;
    auto it = std::lower_bound(pos.begin(), pos.end(), std::make_pair(a, 0u));
    if (it == pos.end()) return s | pos.back().second;
    if (it->first == a || it == pos.begin()) return s | it->second;
    auto lo = it - 1;
    double dl = a - lo->first, dh = it->first - a;
    if (dl < dh) return s | lo->second;
    if (dh < dl) return s | it->second;
    return s | ((lo->second & 1) ? it->second : lo->second);
  }
};

bool is_nan_code(NumFormat f, uint32_t c) {
  return std::isnan(oracle_decode(f, c));
}

std::vector<uint32_t> boundary_inputs(NumFormat f) {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -1.0f,
                          INFINITY,
                          -INFINITY,
                          NAN,
                          -NAN,
                          bits_f32(0x7F800001u),
                          bits_f32(0xFFC12345u),
                          bits_f32(0x00000001u),
                          bits_f32(0x807FFFFFu),
                          1e-40f,
                          3.4e38f,
                          -3.4e38f,
                          1e30f};
  // Every code's value, the midpoints between neighbours (ties), and points just either side.
  Oracle o(f);
  for (size_t i = 0; i < o.pos.size(); ++i) {
    double a = o.pos[i].first;
    v.push_back(float(a));
    v.push_back(-float(a));
    if (i + 1 < o.pos.size()) {
      double mid = (a + o.pos[i + 1].first) / 2;
      float fm = float(mid);
      if (double(fm) == mid) {  // representable in fp32 (true for all but the bf16 top range)
        v.push_back(fm);
        v.push_back(-fm);
        v.push_back(std::nextafter(fm, 0.0f));
        v.push_back(std::nextafter(fm, INFINITY));
      }
    }
  }
  for (float x : {448.0f,     449.0f,     464.0f,     465.0f,     480.0f,     57344.0f,  57345.0f,
                  61440.0f,   65504.0f,   65519.99f,  65520.0f,   65536.0f,   0x1.0p-9f, 0x1.0p-10f,
                  0x1.8p-10f, 0x1.0p-24f, 0x1.0p-25f, 0x1.8p-25f, 0x1.0p-16f, 0x1.0p-17f}) {
    v.push_back(x);
    v.push_back(-x);
  }
  std::vector<uint32_t> bits;
  for (float x : v) bits.push_back(f32_bits(x));
  return bits;
}
}  // namespace

TEST(Conversions, DecodeEveryCodeDeviceEqualsHostEqualsOracle) {
  for (NumFormat f : kFormats) {
    std::vector<uint32_t> codes(size_t(1) << num_format_bits(f));
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint32_t(i);
    auto dev = device_decode(test::ctx(), f, codes);
    auto host = host_decode(f, codes);
    size_t mismatches = 0;
    for (size_t i = 0; i < codes.size(); ++i) {
      if (dev[i] != host[i] && mismatches++ < 5)
        ADD_FAILURE() << num_format_name(f) << " code 0x" << std::hex << i << ": device 0x" << dev[i] << " host 0x"
                      << host[i];
      double want = oracle_decode(f, uint32_t(i));
      float got = bits_f32(host[i]);
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(got)) << num_format_name(f) << " code " << i;
      else {
        EXPECT_EQ(double(got), want) << num_format_name(f) << " code " << i;
        EXPECT_EQ(std::signbit(got), std::signbit(want)) << num_format_name(f) << " code " << i;
      }
    }
    EXPECT_EQ(mismatches, 0u) << num_format_name(f);
  }
}

TEST(Conversions, KnownValues) {
  EXPECT_EQ(e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), 0x1.0p-9f);
  EXPECT_EQ(e4m3_to_f32(0x08), 0x1.0p-6f);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7F)) && std::isnan(e4m3_to_f32(0xFF)));
  EXPECT_EQ(e5m2_to_f32(0x7B), 57344.0f);
  EXPECT_TRUE(std::isinf(e5m2_to_f32(0x7C)));
  EXPECT_EQ(fp16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), 0x1.0p-24f);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(f32_to_e4m3(1000.0f), 0x7E);
  EXPECT_EQ(f32_to_e4m3(-INFINITY), 0xFE);
  EXPECT_EQ(f32_to_e4m3(NAN) & 0x7F, 0x7F);
  EXPECT_EQ(f32_to_e5m2(1e6f), 0x7B);
  EXPECT_EQ(f32_to_e5m2(INFINITY), 0x7B);
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7C00);  // tie between 65504 and 65536 goes to even: inf
  EXPECT_EQ(f32_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3F808000u)), 0x3F80);  // tie to even (down)
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3F818000u)), 0x3F82);  // tie to even (up)
  EXPECT_EQ(f32_to_e4m3(0x1.0p-10f), 0x00);               // half the smallest subnormal: to even 0
  EXPECT_EQ(f32_to_e4m3(0x1.8p-10f), 0x01);
}

TEST(Conversions, EncodeBoundaryCasesDeviceHostOracle) {
  for (NumFormat f : kFormats) {
    Oracle o(f);
    auto in = boundary_inputs(f);
    auto dev = device_encode(test::ctx(), f, in);
    auto host = host_encode(f, in);
    size_t bad = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      float x = bits_f32(in[i]);
      if (dev[i] != host[i] && bad++ < 10)
        ADD_FAILURE() << num_format_name(f) << " x=" << x << " (0x" << std::hex << in[i] << "): device 0x" << dev[i]
                      << " host 0x" << host[i];
      if (std::isnan(x)) {
        EXPECT_TRUE(is_nan_code(f, host[i])) << num_format_name(f) << " NaN must stay NaN";
        EXPECT_EQ((host[i] >> (num_format_bits(f) - 1)) & 1, f32_bits(x) >> 31) << "NaN sign kept";
      } else {
        uint32_t want = std::isinf(x) && (f == NumFormat::kE4m3 || f == NumFormat::kE5m2)
                            ? o.encode(std::signbit(x) ? -3e38f : 3e38f)
                            : o.encode(x);
        if (host[i] != want && bad++ < 10)
          ADD_FAILURE() << num_format_name(f) << " x=" << x << " (0x" << std::hex << in[i] << "): host 0x" << host[i]
                        << " oracle 0x" << want;
      }
    }
    EXPECT_EQ(bad, 0u) << num_format_name(f) << " over " << in.size() << " boundary inputs";
  }
}

TEST(Conversions, EncodeMillionRandomValues) {
  std::mt19937_64 rng(test::seed());
  const size_t n = 1 << 20;
  for (NumFormat f : kFormats) {
    Oracle o(f);
    std::vector<uint32_t> in(n);
    // Half raw bit patterns (every exponent, NaNs, subnormals), half values in the format's range.
    std::uniform_int_distribution<int> ex(-28, 18);
    std::uniform_real_distribution<float> mant(1.0f, 2.0f);
    for (size_t i = 0; i < n; ++i) {
      if (i & 1)
        in[i] = uint32_t(rng());
      else
        in[i] = f32_bits(std::ldexp(mant(rng), ex(rng)) * ((rng() & 1) ? -1.0f : 1.0f));
    }
    auto dev = device_encode(test::ctx(), f, in);
    auto host = host_encode(f, in);
    size_t dev_bad = 0, oracle_bad = 0;
    for (size_t i = 0; i < n; ++i) {
      if (dev[i] != host[i] && dev_bad++ < 5)
        ADD_FAILURE() << num_format_name(f) << " 0x" << std::hex << in[i] << ": device 0x" << dev[i] << " host 0x"
                      << host[i];
      float x = bits_f32(in[i]);
      if (std::isnan(x) || std::isinf(x) || (i % 7) != 0) continue;  // oracle on a seventh: it is slow
      if (host[i] != o.encode(x) && oracle_bad++ < 5)
        ADD_FAILURE() << num_format_name(f) << " x=" << x << ": host 0x" << std::hex << host[i] << " oracle 0x"
                      << o.encode(x);
    }
    EXPECT_EQ(dev_bad, 0u) << num_format_name(f);
    EXPECT_EQ(oracle_bad, 0u) << num_format_name(f);
  }
}
