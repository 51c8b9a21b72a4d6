#include "host/formats/gguf.h"

#include <cmath>
#include <cstring>

#include "host/numeric.h"
#include "runtime/status.h"

namespace clq {

namespace {
uint16_t u16_at(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
double f16_at(const uint8_t* p) { return double(fp16_to_f32(u16_at(p))); }

// Q4_K's 6-bit scale and min of sub-block j (0..7) from its 12 packed bytes: the first four
// sub-blocks keep theirs in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); the last four
// take 4 low bits from bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-7.
void q4k_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Byte offsets of a block's fp16 scales (d, and dmin for Q4_K).
std::vector<int> scale_offsets(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::kQ4_0: case GgmlType::kQ8_0: return {0};
    case GgmlType::kQ4_K: return {0, 2};
    case GgmlType::kQ6_K: return {208};
    default: return {};
  }
}
}  // namespace

bool gguf_type_supported(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::kQ4_0: case GgmlType::kQ8_0: case GgmlType::kQ4_K: case GgmlType::kQ6_K: return true;
    default: return false;
  }
}

std::string gguf_supported_types() { return "Q4_0, Q8_0, Q4_K, Q6_K"; }

GgufLinear validate_gguf_linear(const GgufTensor& t) {
  const std::string who = "GGUF tensor '" + t.name + "'";
  if (!gguf_type_supported(t.type))
    fail(Status::kNotSupported, who + " is " + ggml_type_name(t.type) + "; clquant runs GGUF linear layers in " +
                                    gguf_supported_types());
  if (t.ne.size() != 2)
    fail(Status::kInvalidShape, who + " has dims " + t.dims_str() + "; a linear layer's weight has 2, [K, N]");
  const GgmlTypeInfo* ti = ggml_type_info(t.type);
  GgufLinear l;
  l.weight = &t;
  l.type = t.type;
  l.K = t.ne[0];
  l.N = t.ne[1];
  l.block = ti->block;
  l.block_bytes = ti->block_bytes;
  if (l.K % l.block != 0)  // the reader checks it too; a tensor built by hand may not have gone through it
    fail(Status::kInvalidShape, who + " rows of " + std::to_string(l.K) + " values are not whole " + ti->name +
                                    " blocks of " + std::to_string(l.block));
  if (size_t(l.row_bytes()) * size_t(l.N) != t.nbytes || !t.data)
    fail(Status::kFormatError, who + " holds " + std::to_string(t.nbytes) + " bytes; " + t.dims_str() + " of " +
                                   ti->name + " needs " + std::to_string(size_t(l.row_bytes()) * size_t(l.N)));
  if (l.N > (int64_t(1) << 31) - 1 || l.K > (int64_t(1) << 31) - 1)
    fail(Status::kInvalidShape, who + " " + t.dims_str() + ": each dim must be below 2^31");
  const auto offs = scale_offsets(t.type);
  const size_t blocks = t.nbytes / size_t(l.block_bytes);
  for (size_t b = 0; b < blocks; ++b)
    for (int o : offs) {
      const uint16_t h = u16_at(t.data + b * size_t(l.block_bytes) + size_t(o));
      if ((h & 0x7C00) == 0x7C00) {
        const int64_t row = int64_t(b) / (l.K / l.block), col = (int64_t(b) % (l.K / l.block)) * l.block;
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%04X", h);
        fail(Status::kFormatError, who + ": block at row " + std::to_string(row) + ", column " + std::to_string(col) +
                                       " has a non-finite fp16 scale (" + hex + "); every scale must be finite");
      }
    }
  return l;
}

double gguf_weight(const GgufLinear& l, int64_t n, int64_t k) {
  const uint8_t* blk = l.weight->data + size_t(n) * size_t(l.row_bytes()) + size_t(k / l.block) * size_t(l.block_bytes);
  const int j = int(k % l.block);
  switch (GgmlType(l.type)) {
    case GgmlType::kQ4_0: {
      const int q = j < 16 ? (blk[2 + j] & 0xF) : (blk[2 + j - 16] >> 4);
      return f16_at(blk) * double(q - 8);
    }
    case GgmlType::kQ8_0:
      return f16_at(blk) * double(int8_t(blk[2 + j]));
    case GgmlType::kQ4_K: {
      int sc, m;
      q4k_scale_min(blk + 4, j / 32, &sc, &m);
      const uint8_t byte = blk[16 + 32 * (j / 64) + (j % 32)];
      const int q = (j % 64) < 32 ? (byte & 0xF) : (byte >> 4);
      return f16_at(blk) * sc * q - f16_at(blk + 2) * m;
    }
    case GgmlType::kQ6_K: {
      const int half = j / 128, r = j % 128, quarter = r / 32, l32 = r % 32;
      const uint8_t lo = blk[64 * half + l32 + (quarter & 1) * 32];
      const int low = quarter < 2 ? (lo & 0xF) : (lo >> 4);
      const int high = (blk[128 + 32 * half + l32] >> (2 * quarter)) & 3;
      const int sc = int8_t(blk[192 + j / 16]);
      return f16_at(blk + 208) * sc * double((low | (high << 4)) - 32);
    }
    default:
      fail(Status::kInternal, std::string("gguf_weight: type ") + ggml_type_name(l.type));
  }
}

namespace {
// Code, scale and offset of value k of row n (see GgufAffine for why each is exact).
void affine_at(const GgufLinear& l, int64_t n, int64_t k, uint32_t* code, float* s, float* o) {
  const uint8_t* blk = l.weight->data + size_t(n) * size_t(l.row_bytes()) + size_t(k / l.block) * size_t(l.block_bytes);
  const int j = int(k % l.block);
  auto f16 = [](const uint8_t* p) { return fp16_to_f32(u16_at(p)); };
  switch (GgmlType(l.type)) {
    case GgmlType::kQ4_0:
      *code = j < 16 ? (blk[2 + j] & 0xFu) : uint32_t(blk[2 + j - 16] >> 4);
      *s = f16(blk);
      *o = -8.0f * *s;
      return;
    case GgmlType::kQ8_0:
      *code = uint32_t(int(int8_t(blk[2 + j])) + 128);
      *s = f16(blk);
      *o = -128.0f * *s;
      return;
    case GgmlType::kQ4_K: {
      int sc, m;
      q4k_scale_min(blk + 4, j / 32, &sc, &m);
      const uint8_t byte = blk[16 + 32 * (j / 64) + (j % 32)];
      *code = (j % 64) < 32 ? (byte & 0xFu) : uint32_t(byte >> 4);
      *s = f16(blk) * float(sc);
      *o = -(f16(blk + 2) * float(m));
      return;
    }
    case GgmlType::kQ6_K: {
      const int hb = j / 128, r = j % 128, quarter = r / 32, l32 = r % 32;
      const uint8_t lo = blk[64 * hb + l32 + (quarter & 1) * 32];
      const uint32_t low = quarter < 2 ? (lo & 0xFu) : uint32_t(lo >> 4);
      const uint32_t high = (blk[128 + 32 * hb + l32] >> (2 * quarter)) & 3u;
      *code = low | (high << 4);
      *s = f16(blk + 208) * float(int8_t(blk[192 + j / 16]));
      *o = -32.0f * *s;
      return;
    }
    default:
      fail(Status::kInternal, std::string("affine_at: type ") + ggml_type_name(l.type));
  }
}
}  // namespace

GgufAffine repack_gguf_affine(const GgufLinear& l) {
  GgufAffine a;
  a.K = l.K;
  a.N = l.N;
  const bool wide = l.type == uint32_t(GgmlType::kQ8_0) || l.type == uint32_t(GgmlType::kQ6_K);
  a.code_bits = wide ? 8 : 4;
  a.group = l.type == uint32_t(GgmlType::kQ6_K) ? 16 : 32;
  const int per_word = 32 / a.code_bits;
  const int64_t words = l.K / per_word, groups = l.K / a.group;
  a.codes.assign(size_t(words) * size_t(l.N), 0);
  a.so.assign(size_t(groups) * size_t(l.N) * 2, 0.0f);
  for (int64_t n = 0; n < l.N; ++n)
    for (int64_t k = 0; k < l.K; ++k) {
      uint32_t code;
      float sc, off;
      affine_at(l, n, k, &code, &sc, &off);
      a.codes[size_t(k / per_word) * size_t(l.N) + size_t(n)] |= code << (a.code_bits * (k % per_word));
      if (k % a.group == 0) {
        const size_t g = (size_t(k / a.group) * size_t(l.N) + size_t(n)) * 2;
        a.so[g] = sc;
        a.so[g + 1] = off;
      }
    }
  return a;
}

W4Packed repack_gguf_q4_0(const GgufLinear& l) {
  if (l.type != uint32_t(GgmlType::kQ4_0))
    fail(Status::kInvalidArgument, std::string("repack_gguf_q4_0: the layer is ") + ggml_type_name(l.type));
  W4Packed p;
  p.K = p.Kp = l.K;  // whole 32-value blocks: already a multiple of kW4RowAlign
  p.N = l.N;
  p.G = l.K / 32;
  p.qw.assign(size_t(l.K / 8) * size_t(l.N), 0);
  p.scales.assign(size_t(p.G) * size_t(l.N), 0);
  p.zeros.assign(size_t(p.G) * size_t(l.N), 8);
  for (int64_t n = 0; n < l.N; ++n)
    for (int64_t k = 0; k < l.K; ++k) {
      const uint8_t* blk = l.weight->data + size_t(n) * size_t(l.row_bytes()) + size_t(k / 32) * 18;
      const int j = int(k % 32);
      const uint32_t q = j < 16 ? (blk[2 + j] & 0xFu) : uint32_t(blk[2 + j - 16] >> 4);
      p.qw[size_t(k / 8) * size_t(l.N) + size_t(n)] |= q << (4 * (k % 8));
      if (j == 0) p.scales[size_t(k / 32) * size_t(l.N) + size_t(n)] = u16_at(blk);
    }
  p.perm.resize(size_t(l.K));
  for (int64_t r = 0; r < l.K; ++r) p.perm[size_t(r)] = int32_t(r);
  p.gstart.resize(size_t(p.G) + 1);
  for (int64_t g = 0; g <= p.G; ++g) p.gstart[size_t(g)] = int32_t(4 * g);
  p.wgroup.resize(size_t(l.K / 8));
  for (int64_t w = 0; w < l.K / 8; ++w) p.wgroup[size_t(w)] = int32_t(w / 4);
  return p;
}

std::vector<double> dequantize_gguf(const GgufLinear& l) {
  std::vector<double> w(size_t(l.K) * size_t(l.N));
  for (int64_t n = 0; n < l.N; ++n)
    for (int64_t k = 0; k < l.K; ++k) w[size_t(k) * size_t(l.N) + size_t(n)] = gguf_weight(l, n, k);
  return w;
}

}  // namespace clq
