#include "host/reference/quantize_reference.h"

#include <algorithm>
#include <cmath>

namespace clq {

namespace {
float wv(const DenseWeight& w, int64_t n, int64_t k) { return load_as_f32(w.data, size_t(n * w.K + k), w.dtype); }
}  // namespace

QuantizedWeight quantize_weight_host(const DenseWeight& w, const QuantSpec& spec) {
  check_quant_input(w, spec);
  QuantizedWeight q;
  q.spec = spec;
  q.N = w.N;
  q.K = w.K;
  q.codes.assign(size_t(w.N * w.K), 0);
  if (!spec.is_int()) {
    q.group = 128;
    q.G = (w.K + 127) / 128;
    q.Nb = (w.N + 127) / 128;
    q.scales32.resize(size_t(q.Nb * q.G));
    for (int64_t nb = 0; nb < q.Nb; ++nb)
      for (int64_t kb = 0; kb < q.G; ++kb) {
        const int64_t n1 = std::min(w.N, nb * 128 + 128), k1 = std::min(w.K, kb * 128 + 128);
        float amax = 0.0f;
        for (int64_t n = nb * 128; n < n1; ++n)
          for (int64_t k = kb * 128; k < k1; ++k) amax = std::max(amax, std::fabs(wv(w, n, k)));
        const float s = std::max(amax, 0x1p-100f) / 448.0f;
        q.scales32[size_t(nb * q.G + kb)] = s;
        for (int64_t n = nb * 128; n < n1; ++n)
          for (int64_t k = kb * 128; k < k1; ++k) q.codes[size_t(n * w.K + k)] = f32_to_e4m3(wv(w, n, k) / s);
      }
    return q;
  }
  const int bits = spec.bits(), off = 1 << (bits - 1), top = (1 << bits) - 1;
  q.group = spec.group_size == -1 ? w.K : spec.group_size;
  q.G = (w.K + q.group - 1) / q.group;
  q.scales16.resize(size_t(w.N * q.G));
  if (!spec.symmetric) q.zeros.resize(size_t(w.N * q.G));
  for (int64_t n = 0; n < w.N; ++n)
    for (int64_t g = 0; g < q.G; ++g) {
      const int64_t k0 = g * q.group, k1 = std::min(w.K, k0 + q.group);
      float hi = 0.0f, lo = 0.0f;  // max(mx, 0) and min(mn, 0), or the largest magnitude
      for (int64_t k = k0; k < k1; ++k) {
        const float v = wv(w, n, k);
        if (spec.symmetric) {
          hi = std::max(hi, std::fabs(v));
        } else {
          hi = std::max(hi, v);
          lo = std::min(lo, v);
        }
      }
      const float span = spec.symmetric ? hi : hi - lo;
      const float div = spec.symmetric ? float(off - 1) : float(top);
      const uint16_t s16 = std::isinf(span) ? uint16_t(0x7C00) : f32_to_fp16(span / div);
      const float s = fp16_to_f32(s16);
      const bool usable = s16 != 0 && s16 != 0x7C00;
      int z = off;
      if (!spec.symmetric && usable) z = int(std::min(float(top), std::max(0.0f, std::nearbyint(-lo / s))));
      q.scales16[size_t(n * q.G + g)] = s16;
      if (!spec.symmetric) q.zeros[size_t(n * q.G + g)] = uint8_t(z);
      for (int64_t k = k0; k < k1; ++k) {
        int c = off;
        if (usable) {
          const float r = std::nearbyint(wv(w, n, k) / s);
          c = spec.symmetric ? int(std::min(float(off - 1), std::max(float(-off), r))) + off
                             : int(std::min(float(top), std::max(0.0f, r + float(z))));
        }
        q.codes[size_t(n * w.K + k)] = uint8_t(c);
      }
    }
  return q;
}

}  // namespace clq
