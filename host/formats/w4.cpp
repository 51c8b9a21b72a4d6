#include "host/formats/w4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/numeric.h"
#include "runtime/status.h"

namespace clq {

const char* w4_format_name(W4Format f) {
  switch (f) {
    case W4Format::kGptq:
      return "gptq";
    case W4Format::kGptqV2:
      return "gptq_v2";
    case W4Format::kAwq:
      return "awq";
    case W4Format::kCompressedTensors:
      return "compressed-tensors";
  }
  return "?";
}

bool w4_format_from_name(const std::string& s, W4Format* out) {
  if (s == "gptq")
    *out = W4Format::kGptq;
  else if (s == "gptq_v2")
    *out = W4Format::kGptqV2;
  else if (s == "awq")
    *out = W4Format::kAwq;
  else if (s == "compressed-tensors")
    *out = W4Format::kCompressedTensors;
  else
    return false;
  return true;
}

namespace {
// AWQ: column 8j + c sits in nibble kAwqNibble[c] of word j.
const int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

int32_t rd_i32(const StTensor& t, size_t i) {
  int32_t v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}
uint16_t rd_u16(const StTensor& t, size_t i) {
  uint16_t v;
  std::memcpy(&v, t.data + 2 * i, 2);
  return v;
}

void need(const StTensor* t, const char* what) {
  if (!t) fail(Status::kFormatError, std::string("int4 layer has no ") + what + " tensor");
}
void need_dtype(const StTensor& t, StDType want) {
  if (t.dtype != want)
    fail(Status::kFormatError,
         "tensor '" + t.name + "' has dtype " + st_dtype_name(t.dtype) + ", expected " + st_dtype_name(want));
}
void need_rank(const StTensor& t, size_t rank) {
  if (t.shape.size() != rank)
    fail(Status::kInvalidShape,
         "tensor '" + t.name + "' has shape " + t.shape_str() + ", expected rank " + std::to_string(rank));
}
std::string i2s(int64_t v) {
  return std::to_string(v);
}
// Field i of a word holding 32 / bits codes, code i in bits [bits*i, bits*i + bits).
uint32_t field(uint32_t w, int64_t i, int bits) {
  return (w >> (uint32_t(bits) * uint32_t(i))) & ((1u << bits) - 1u);
}
int8_t rd_i8(const StTensor& t, size_t i) {
  return int8_t(t.data[i]);
}
}  // namespace

namespace {
// The group size (given, or inferred from the G groups of the scales) and the optional g_idx of
// an int4 layer, with the rules of both formats: G = ceil(K / group_size); every g_idx value in
// [0, G); without g_idx, K a multiple of the group size (else the last group would read past the
// last row of scales and zeros: a peer's bug). `what` names the scales, `unit` their groups.
void resolve_groups(const W4Checkpoint& ck, int64_t G, const std::string& what, const char* unit,
                    const char* gidx_name, W4Shape& s) {
  int gs = ck.group_size;
  if (gs == 0) {
    if (G == 1)
      gs = -1;
    else if (ck.g_idx)
      gs = int((s.K + G - 1) / G);  // only the group count matters with g_idx
    else if (s.K % G == 0)
      gs = int(s.K / G);
    else
      fail(Status::kInvalidShape, "cannot infer the group size: K = " + i2s(s.K) + " is not a multiple of the " +
                                      i2s(G) + " " + unit + " of " + what + " and there is no " + gidx_name);
  }
  if (gs != -1 && gs <= 0) fail(Status::kInvalidArgument, "group size " + i2s(gs) + " is neither -1 nor positive");
  if (gs == int(s.K)) gs = -1;
  const int64_t G_expected = gs == -1 ? 1 : (s.K + gs - 1) / gs;
  if (G != G_expected)
    fail(Status::kInvalidShape, what + " has " + i2s(G) + " " + unit + ", but K = " + i2s(s.K) + " with group size " +
                                    i2s(gs) + " needs ceil(K / group_size) = " + i2s(G_expected));
  s.G = G;
  s.group_size = gs;
  if (ck.g_idx) {
    const StTensor& gi = *ck.g_idx;
    need_dtype(gi, StDType::kI32);
    need_rank(gi, 1);
    if (gi.shape[0] != s.K)
      fail(Status::kInvalidShape, std::string(gidx_name) + " '" + gi.name + "' has " + i2s(gi.shape[0]) +
                                      " entries, but K = " + i2s(s.K));
    for (int64_t k = 0; k < s.K; ++k) {
      const int32_t g = rd_i32(gi, size_t(k));
      if (g < 0 || g >= G)
        fail(Status::kInvalidArgument, std::string(gidx_name) + "[" + i2s(k) + "] = " + i2s(g) + " is outside [0, " +
                                           i2s(G) + ")");
    }
    s.has_g_idx = true;
  } else if (gs != -1 && s.K % gs != 0) {
    fail(Status::kInvalidShape, "K = " + i2s(s.K) + " is not a multiple of group size " + i2s(gs) +
                                    " and there is no " + gidx_name);
  }
}

float scale_as_f32(const StTensor& t, size_t i);

// compressed-tensors pack-quantized: transposed shapes, optional zero points, wider scale types.
W4Shape validate_ct(const W4Checkpoint& ck) {
  need(ck.qweight, "weight_packed");
  need(ck.scales, "weight_scale");
  const StTensor &qw = *ck.qweight, &sc = *ck.scales;
  // int-quantized 8-bit stores one signed byte per weight; everything else packs into I32 words.
  const bool unpacked = ck.bits == 8 && qw.dtype == StDType::kI8;
  if (!unpacked) need_dtype(qw, StDType::kI32);
  const int per = 32 / ck.bits;
  if (sc.dtype != StDType::kF16 && sc.dtype != StDType::kBF16 && sc.dtype != StDType::kF32)
    fail(Status::kFormatError, "tensor '" + sc.name + "' has dtype " + st_dtype_name(sc.dtype) +
                                   ", expected F16, BF16 or F32");
  need_rank(qw, 2);
  need_rank(sc, 2);
  W4Shape s;
  s.bits = ck.bits;
  s.N = qw.shape[0];
  if (qw.shape[1] > (int64_t(1) << 40) || s.N > (int64_t(1) << 31))
    fail(Status::kInvalidShape, "weight_packed '" + qw.name + "' shape " + qw.shape_str() + " is implausibly wide");
  s.K = unpacked ? qw.shape[1] : qw.shape[1] * per;
  if (s.K <= 0 || s.N <= 0)
    fail(Status::kInvalidShape, "weight_packed '" + qw.name + "' shape " + qw.shape_str() + " gives an empty matrix");
  if (s.K % per || s.N % per)
    fail(Status::kInvalidShape, "K = " + i2s(s.K) + " and N = " + i2s(s.N) + " must both be multiples of " + i2s(per) +
                                    " (" + i2s(ck.bits) + "-bit codes, " + i2s(per) + " to a word; weight " +
                                    qw.shape_str() + ")");
  if (sc.shape[0] != s.N)
    fail(Status::kInvalidShape, "weight_scale '" + sc.name + "' shape " + sc.shape_str() + " has " +
                                    i2s(sc.shape[0]) + " rows, but weight_packed " + qw.shape_str() + " gives N = " +
                                    i2s(s.N));
  const int64_t G = sc.shape[1];
  if (G < 1) fail(Status::kInvalidShape, "weight_scale '" + sc.name + "' has no groups");
  if (ck.qzeros) {
    const StTensor& qz = *ck.qzeros;
    need_dtype(qz, unpacked ? StDType::kI8 : StDType::kI32);
    need_rank(qz, 2);
    const int64_t zrows = unpacked ? s.N : s.N / per;
    if (qz.shape[0] != zrows || qz.shape[1] != G)
      fail(Status::kInvalidShape, "weight_zero_point '" + qz.name + "' shape " + qz.shape_str() +
                                      " disagrees with weight_scale " + sc.shape_str() + ": expected [" + i2s(zrows) +
                                      ", " + i2s(G) + "]" + (unpacked ? " (one I8 per column and group)" : " (packed along N)"));
  }
  resolve_groups(ck, G, "weight_scale '" + sc.name + "'", "groups", "weight_g_idx", s);
  // A NaN or infinite scale turns a whole output column into NaN (as for GPTQ/AWQ scales).
  for (int64_t i = 0; i < G * s.N; ++i) {
    const float v = scale_as_f32(sc, size_t(i));
    if (!std::isfinite(v))
      fail(Status::kInvalidArgument, "weight_scale '" + sc.name + "'[" + i2s(i / G) + "][" + i2s(i % G) + "] is " +
                                         std::to_string(v) + "; int4 group scales must be finite");
  }
  return s;
}

float scale_as_f32(const StTensor& t, size_t i) {
  switch (t.dtype) {
    case StDType::kF32: {
      float v;
      std::memcpy(&v, t.data + 4 * i, 4);
      return v;
    }
    case StDType::kBF16:
      return bf16_to_f32(rd_u16(t, i));
    default:
      return fp16_to_f32(rd_u16(t, i));
  }
}
}  // namespace

W4Shape validate_w4(const W4Checkpoint& ck) {
  if (ck.bits != 4 && ck.bits != 8)
    fail(Status::kNotSupported, std::to_string(ck.bits) + "-bit integer weights: clquant reads 4 and 8 bits");
  if (ck.bits == 8 && ck.format == W4Format::kAwq)
    fail(Status::kNotSupported, "AWQ checkpoints are 4-bit; an 8-bit AWQ layer is not a format clquant knows");
  if (ck.format == W4Format::kCompressedTensors) return validate_ct(ck);
  need(ck.qweight, "qweight");
  need(ck.qzeros, "qzeros");
  need(ck.scales, "scales");
  const StTensor &qw = *ck.qweight, &qz = *ck.qzeros, &sc = *ck.scales;
  need_dtype(qw, StDType::kI32);
  need_dtype(qz, StDType::kI32);
  need_dtype(sc, StDType::kF16);
  need_rank(qw, 2);
  need_rank(qz, 2);
  need_rank(sc, 2);
  W4Shape s;
  s.bits = ck.bits;
  const int per = 32 / ck.bits;
  const bool awq = ck.format == W4Format::kAwq;
  // K and N index 32-bit kernel arithmetic; checking the packed dims first also keeps the
  // products below in range (a [2^60, 0] qweight is a valid empty tensor, not a layer).
  constexpr int64_t kMaxDim = int64_t(1) << 31;
  for (const StTensor* t : {&qw, &qz, &sc})
    for (int64_t d : t->shape)
      if (d > kMaxDim / 8)
        fail(Status::kInvalidShape, "tensor '" + t->name + "' shape " + t->shape_str() +
                                        " has a dimension above 2^28: K and N must stay below 2^31");
  if (awq) {
    s.K = qw.shape[0];
    s.N = qw.shape[1] * 8;
    if (ck.g_idx)
      fail(Status::kInvalidArgument, "AWQ checkpoints have no g_idx, but '" + ck.g_idx->name + "' was given");
  } else {
    s.K = qw.shape[0] * per;
    s.N = qw.shape[1];
  }
  if (s.K <= 0 || s.N <= 0)
    fail(Status::kInvalidShape, "qweight '" + qw.name + "' shape " + qw.shape_str() + " gives an empty matrix");
  if (s.K % per || s.N % per)
    fail(Status::kInvalidShape, "K = " + i2s(s.K) + " and N = " + i2s(s.N) + " must both be multiples of " + i2s(per) +
                                    " (" + i2s(ck.bits) + "-bit codes, " + i2s(per) + " to a word; qweight " +
                                    qw.shape_str() + ")");
  if (sc.shape[1] != s.N)
    fail(Status::kInvalidShape, "scales '" + sc.name + "' shape " + sc.shape_str() + " has " + i2s(sc.shape[1]) +
                                    " columns, but qweight " + qw.shape_str() + " gives N = " + i2s(s.N));
  int64_t G = sc.shape[0];
  if (G < 1) fail(Status::kInvalidShape, "scales '" + sc.name + "' has no group rows");
  if (qz.shape[0] != G || qz.shape[1] * per != s.N)
    fail(Status::kInvalidShape, "qzeros '" + qz.name + "' shape " + qz.shape_str() + " disagrees with scales " +
                                    sc.shape_str() + ": expected [" + i2s(G) + ", " + i2s(s.N / per) + "]");
  resolve_groups(ck, G, "scales '" + sc.name + "'", "group rows", "g_idx", s);
  // A NaN or infinite scale turns a whole output column into NaN; refuse it (any sign is a
  // well-defined layer: s * (q - z) is linear in s).
  const int64_t n_scales = std::min<int64_t>(G * s.N, int64_t(sc.nbytes / 2));
  for (int64_t i = 0; i < n_scales; ++i) {
    const uint16_t v = rd_u16(sc, size_t(i));
    if ((v & 0x7C00) == 0x7C00)
      fail(Status::kInvalidArgument, "scales '" + sc.name + "'[" + i2s(i / s.N) + "][" + i2s(i % s.N) + "] is " +
                                         ((v & 0x03FF) ? "NaN" : (v & 0x8000) ? "-Inf" : "+Inf") +
                                         "; int4 group scales must be finite");
  }
  return s;
}

W4Accessor::W4Accessor(const W4Checkpoint& c) : shape(validate_w4(c)), format(c.format), ck(c) {}

uint32_t W4Accessor::q(int64_t k, int64_t n) const {
  const int bits = shape.bits, per = 32 / bits;
  if (format == W4Format::kCompressedTensors) {
    if (ck.qweight->dtype == StDType::kI8) return uint32_t(rd_i8(*ck.qweight, size_t(n * shape.K + k)) + 128);
    uint32_t w = uint32_t(rd_i32(*ck.qweight, size_t(n * (shape.K / per) + k / per)));
    return field(w, k % per, bits);
  }
  if (format == W4Format::kAwq) {
    uint32_t w = uint32_t(rd_i32(*ck.qweight, size_t(k * (shape.N / 8) + n / 8)));
    return nibble(w, uint32_t(kAwqNibble[n % 8]));
  }
  uint32_t w = uint32_t(rd_i32(*ck.qweight, size_t((k / per) * shape.N + n)));
  return field(w, k % per, bits);
}

uint32_t W4Accessor::z(int64_t g, int64_t n) const {
  const int bits = shape.bits, per = 32 / bits;
  if (format == W4Format::kCompressedTensors) {
    if (!ck.qzeros) return 1u << (bits - 1);  // symmetric: signed zero 0, stored with the offset
    if (ck.qzeros->dtype == StDType::kI8) return uint32_t(rd_i8(*ck.qzeros, size_t(n * shape.G + g)) + 128);
    uint32_t w = uint32_t(rd_i32(*ck.qzeros, size_t((n / per) * shape.G + g)));
    return field(w, n % per, bits);
  }
  uint32_t w = uint32_t(rd_i32(*ck.qzeros, size_t(g * (shape.N / per) + n / per)));
  if (format == W4Format::kAwq) return nibble(w, uint32_t(kAwqNibble[n % 8]));
  uint32_t zs = field(w, n % per, bits);
  return format == W4Format::kGptq ? zs + 1 : zs;  // v1 stores zero - 1
}

float W4Accessor::s(int64_t g, int64_t n) const {
  if (format == W4Format::kCompressedTensors) return scale_as_f32(*ck.scales, size_t(n * shape.G + g));
  return fp16_to_f32(rd_u16(*ck.scales, size_t(g * shape.N + n)));
}

int64_t w4_group_of(const W4Checkpoint& ck, const W4Shape& s, int64_t k) {
  if (s.has_g_idx) return rd_i32(*ck.g_idx, size_t(k));
  return s.group_size == -1 ? 0 : k / s.group_size;
}

int64_t W4Accessor::group(int64_t k) const {
  return w4_group_of(ck, shape, k);
}

std::vector<double> dequantize_w4(const W4Checkpoint& ck) {
  W4Accessor a(ck);
  const int64_t K = a.shape.K, N = a.shape.N;
  std::vector<double> w(static_cast<size_t>(K * N));
  for (int64_t k = 0; k < K; ++k) {
    int64_t g = a.group(k);
    for (int64_t n = 0; n < N; ++n) w[size_t(k * N + n)] = double(a.s(g, n)) * (double(a.q(k, n)) - double(a.z(g, n)));
  }
  return w;
}

size_t W4Packed::device_bytes() const {
  return qw.size() * 4 + scales.size() * 2 + zeros.size() + wgroup.size() * 4 + gstart.size() * 4;
}

GroupedRows group_rows(const W4Accessor& a, int rows_per_word) {
  const int64_t K = a.shape.K, G = a.shape.G, rpw = rows_per_word;
  GroupedRows p;
  p.K = K;
  p.N = a.shape.N;
  p.G = G;
  std::vector<int64_t> count(size_t(G), 0);
  for (int64_t k = 0; k < K; ++k) ++count[size_t(a.group(k))];
  std::vector<int64_t> row_start(size_t(G) + 1, 0);
  for (int64_t g = 0; g < G; ++g)
    row_start[size_t(g) + 1] = row_start[size_t(g)] + (count[size_t(g)] + rpw - 1) / rpw * rpw;
  const int64_t Kp = (row_start[size_t(G)] + kW4RowAlign - 1) / kW4RowAlign * kW4RowAlign;
  p.Kp = Kp;
  p.perm.assign(size_t(Kp), -1);
  std::vector<int64_t> fill(row_start.begin(), row_start.end() - 1);
  for (int64_t k = 0; k < K; ++k) p.perm[size_t(fill[size_t(a.group(k))]++)] = int32_t(k);
  // Padding inside a group also moves rows, so this is false only for the checkpoint's own order.
  for (int64_t r = 0; r < K && !p.act_order; ++r) p.act_order = p.perm[size_t(r)] != r;
  p.gstart.resize(size_t(G) + 1);
  for (int64_t g = 0; g <= G; ++g) p.gstart[size_t(g)] = int32_t(row_start[size_t(g)] / rpw);
  p.gstart[size_t(G)] = int32_t(Kp / rpw);  // trailing padding words join the last group (their x is 0)
  p.wgroup.assign(size_t(Kp / rpw), int32_t(G - 1));
  for (int64_t g = 0; g < G; ++g)
    for (int32_t w = p.gstart[size_t(g)]; w < int32_t(row_start[size_t(g) + 1] / rpw); ++w)
      p.wgroup[size_t(w)] = int32_t(g);
  return p;
}

W4Packed repack_w4(const W4Checkpoint& ck) {
  if (ck.bits != 4)
    fail(Status::kNotSupported, std::to_string(ck.bits) + "-bit layer: the int4 kernels take 4-bit codes (an 8-bit "
                                "layer runs through W8A16Int8Gemm, repack_w8)");
  W4Accessor a(ck);
  W4Packed p;
  static_cast<GroupedRows&>(p) = group_rows(a, 8);
  const int64_t K = p.K, N = p.N, G = p.G, Kp = p.Kp;

  p.qw.assign(size_t(Kp / 8 * N), 0u);
  const bool identity_gptq = (a.format == W4Format::kGptq || a.format == W4Format::kGptqV2) && !p.act_order;
  if (identity_gptq) {
    // Packed along K with rows in order: the checkpoint's words are already the kernel's words.
    std::memcpy(p.qw.data(), ck.qweight->data, size_t(K / 8 * N) * 4);
  } else {
    for (int64_t r = 0; r < Kp; ++r) {
      int32_t k = p.perm[size_t(r)];
      if (k < 0) continue;
      uint32_t* dst = &p.qw[size_t(r / 8 * N)];
      uint32_t shift = uint32_t(4 * (r % 8));
      for (int64_t n = 0; n < N; ++n) dst[n] |= a.q(k, n) << shift;
    }
  }
  p.scales.resize(size_t(G * N));
  if (a.format != W4Format::kCompressedTensors) {
    std::memcpy(p.scales.data(), ck.scales->data, p.scales.size() * 2);
  } else {
    // The kernels read fp16 scales; a BF16/F32 scale is taken only where fp16 holds it exactly,
    // so the kernels and the reference (which reads the checkpoint's own value) agree.
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n) {
        const float v = a.s(g, n);
        const uint16_t h = f32_to_fp16(v);
        if (!(fp16_to_f32(h) == v))
          fail(Status::kNotSupported, "weight_scale '" + ck.scales->name + "'[" + i2s(n) + "][" + i2s(g) + "] = " +
                                          std::to_string(v) + " is not exactly representable in fp16, the int4 "
                                          "kernels' scale type");
        p.scales[size_t(g * N + n)] = h;
      }
  }
  p.zeros.resize(size_t(G * N));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) p.zeros[size_t(g * N + n)] = uint8_t(a.z(g, n));
  return p;
}

}  // namespace clq
