#include "host/formats/w8.h"

#include <cstring>

#include "runtime/status.h"

namespace clq {

size_t W8Packed::device_bytes() const {
  return qw.size() * 4 + scales.size() * 4 + zeros.size() * 2 + wgroup.size() * 4 + gstart.size() * 4;
}

W8Packed repack_w8(const W4Checkpoint& ck) {
  if (ck.bits != 8)
    fail(Status::kNotSupported, std::to_string(ck.bits) + "-bit layer: the int8 kernels take 8-bit codes (a 4-bit "
                                "layer runs through W4A16Gemm, repack_w4)");
  W4Accessor a(ck);
  W8Packed p;
  static_cast<GroupedRows&>(p) = group_rows(a, 4);
  const int64_t K = p.K, N = p.N, G = p.G;
  p.qw.assign(size_t(p.Kp / 4 * N), 0u);
  const bool gptq = a.format == W4Format::kGptq || a.format == W4Format::kGptqV2;
  if (gptq && !p.act_order) {
    // GPTQ packs along K in row order: its words are already the kernel's words.
    std::memcpy(p.qw.data(), ck.qweight->data, size_t(K / 4 * N) * 4);
  } else {
    for (int64_t r = 0; r < p.Kp; ++r) {
      const int32_t k = p.perm[size_t(r)];
      if (k < 0) continue;
      uint32_t* dst = &p.qw[size_t(r / 4 * N)];
      const uint32_t shift = uint32_t(8 * (r % 4));
      for (int64_t n = 0; n < N; ++n) dst[n] |= a.q(k, n) << shift;
    }
  }
  p.scales.resize(size_t(G * N));
  p.zeros.resize(size_t(G * N));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      p.scales[size_t(g * N + n)] = a.s(g, n);
      p.zeros[size_t(g * N + n)] = uint16_t(a.z(g, n));
    }
  return p;
}

}  // namespace clq
