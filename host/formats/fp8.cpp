#include "host/formats/fp8.h"

#include <cmath>
#include <limits>
#include <cstring>

#include "host/numeric.h"
#include "runtime/status.h"

namespace clq {

namespace {
std::string i2s(int64_t v) {
  return std::to_string(v);
}

float rd_f32(const StTensor& t, size_t i) {
  float v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

// A scale as stored, widened exactly: F32, or BF16 / F16 (compressed-tensors keeps its scales in
// the dtype of the weights it observed, bf16 for most models), or F8_E8M0 (ue8m0: the byte is a
// biased exponent, the value 2^(e - 127) exactly, 0xFF is NaN; 2^-127 is an fp32 subnormal and
// still exact).
bool is_scale_dtype(StDType d, bool e8m0) {
  return d == StDType::kF32 || d == StDType::kBF16 || d == StDType::kF16 || (e8m0 && d == StDType::kF8E8M0);
}
float scale_at(const StTensor& t, size_t i) {
  switch (t.dtype) {
    case StDType::kF8E8M0: {
      const uint8_t e = t.data[i];
      if (e == 0xFF) return std::numeric_limits<float>::quiet_NaN();
      return std::ldexp(1.0f, int(e) - 127);
    }
    case StDType::kBF16:
      return load_as_f32(t.data, i, DType::kBF16);
    case StDType::kF16:
      return load_as_f32(t.data, i, DType::kF16);
    default:
      return rd_f32(t, i);
  }
}

float scalar_f32(const StTensor& t, const char* what) {
  if (!is_scale_dtype(t.dtype, false))
    fail(Status::kFormatError, std::string(what) + " '" + t.name + "' has dtype " + st_dtype_name(t.dtype) +
                                   ", expected F32, BF16 or F16");
  if (t.numel() != 1 || t.shape.size() > 1)
    fail(Status::kInvalidShape,
         std::string(what) + " '" + t.name + "' has shape " + t.shape_str() + ", expected a scalar ([] or [1])");
  float v = scale_at(t, 0);
  if (!std::isfinite(v) || v <= 0)
    fail(Status::kInvalidArgument,
         std::string(what) + " '" + t.name + "' = " + std::to_string(v) + " is not a positive finite number");
  return v;
}
// [N, 1] or [N] with N > 1: one scale per output row (a scalar stays per-tensor).
bool is_channel_scale(const StTensor& t, int64_t N) {
  if (N < 2) return false;
  return (t.shape.size() == 2 && t.shape[0] == N && t.shape[1] == 1) || (t.shape.size() == 1 && t.shape[0] == N);
}
}  // namespace


Fp8Shape validate_fp8(const Fp8Checkpoint& ck) {
  if (!ck.weight) fail(Status::kFormatError, "FP8 layer has no weight tensor");
  const StTensor& w = *ck.weight;
  if (w.dtype == StDType::kF8E5M2)
    fail(Status::kNotSupported, "weight '" + w.name + "' is F8_E5M2; FP8 GEMMs take F8_E4M3 weights");
  if (w.dtype != StDType::kF8E4M3)
    fail(Status::kFormatError, "weight '" + w.name + "' has dtype " + st_dtype_name(w.dtype) + ", expected F8_E4M3");
  if (w.shape.size() != 2 || w.shape[0] < 1 || w.shape[1] < 1)
    fail(Status::kInvalidShape,
         "weight '" + w.name + "' has shape " + w.shape_str() + ", expected [N, K] with N, K >= 1");
  Fp8Shape s;
  s.N = w.shape[0];
  s.K = w.shape[1];
  s.Nb = (s.N + kFp8Block - 1) / kFp8Block;
  s.Kb = (s.K + kFp8Block - 1) / kFp8Block;
  if (ck.weight_scale_inv && ck.weight_scale)
    fail(Status::kInvalidArgument,
         "weight '" + w.name + "' has both weight_scale_inv (block) and weight_scale (per-tensor)");
  if (!ck.weight_scale_inv && !ck.weight_scale)
    fail(Status::kFormatError,
         "weight '" + w.name + "' has neither weight_scale_inv (block scales) nor weight_scale (per-tensor)");
  if (ck.weight_scale_inv) {
    const StTensor& sc = *ck.weight_scale_inv;
    if (!is_scale_dtype(sc.dtype, true))
      fail(Status::kFormatError, "weight_scale_inv '" + sc.name + "' has dtype " + st_dtype_name(sc.dtype) +
                                     ", expected F32, BF16, F16 or F8_E8M0");
    if (sc.shape.size() != 2 || sc.shape[0] != s.Nb || sc.shape[1] != s.Kb)
      fail(Status::kInvalidShape, "weight_scale_inv '" + sc.name + "' has shape " + sc.shape_str() + ", but weight " +
                                      w.shape_str() + " with 128x128 blocks needs [ceil(N/128), ceil(K/128)] = [" +
                                      i2s(s.Nb) + ", " + i2s(s.Kb) + "]");
    for (int64_t i = 0; i < s.Nb * s.Kb; ++i) {
      float v = scale_at(sc, size_t(i));
      // Block scales multiply the e4m3 codes (SPEC section 3); writers derive them from the
      // block's absolute maximum, so 0, a negative value or a non-finite one is a broken file.
      if (!std::isfinite(v) || v <= 0)
        fail(Status::kInvalidArgument, "weight_scale_inv '" + sc.name + "'[" + i2s(i / s.Kb) + "][" + i2s(i % s.Kb) +
                                           "] = " + std::to_string(v) + " is not a positive finite number");
    }
    if (ck.input_scale)
      fail(Status::kInvalidArgument, "input_scale '" + ck.input_scale->name +
                                         "' is a per-tensor static scale, but this layer has block scales (activations "
                                         "are quantized per token and 128 columns)");
    s.block = true;
  } else if (is_channel_scale(*ck.weight_scale, s.N)) {
    const StTensor& sc = *ck.weight_scale;
    if (sc.dtype != StDType::kF32 && sc.dtype != StDType::kBF16 && sc.dtype != StDType::kF16)
      fail(Status::kFormatError, "weight_scale '" + sc.name + "' has dtype " + st_dtype_name(sc.dtype) +
                                     ", expected F32, BF16 or F16 per-channel scales");
    for (int64_t n = 0; n < s.N; ++n) {
      const float v = load_as_f32(sc.data, size_t(n), sc.dtype == StDType::kF32    ? DType::kF32
                                                      : sc.dtype == StDType::kBF16 ? DType::kBF16
                                                                                   : DType::kF16);
      if (!std::isfinite(v) || v <= 0)
        fail(Status::kInvalidArgument, "weight_scale '" + sc.name + "'[" + i2s(n) + "] = " + std::to_string(v) +
                                           " is not a positive finite number");
    }
    s.channel = true;
    if (ck.input_scale) s.input_scale = scalar_f32(*ck.input_scale, "input_scale");
    s.block = !s.input_scale;  // dynamic activations: per token and 128 columns
  } else {
    if (ck.weight_scale->shape.size() == 2 && ck.weight_scale->shape[1] == 1 && ck.weight_scale->numel() > 1)
      fail(Status::kInvalidShape, "weight_scale '" + ck.weight_scale->name + "' has shape " +
                                      ck.weight_scale->shape_str() + ": per-channel scales need [N, 1] = [" + i2s(s.N) +
                                      ", 1] for weight " + w.shape_str());
    scalar_f32(*ck.weight_scale, "weight_scale");
    s.block = false;
    if (ck.input_scale) s.input_scale = scalar_f32(*ck.input_scale, "input_scale");
  }
  // The e4m3 NaN code (S.1111.111) would poison outputs, and keeping it out lets the kernels'
  // decode skip the NaN case.
  for (size_t i = 0; i < w.nbytes; ++i)
    if ((w.data[i] & 0x7F) == 0x7F)
      fail(Status::kInvalidArgument, "weight '" + w.name + "'[" + i2s(int64_t(i) / s.K) + "][" + i2s(int64_t(i) % s.K) +
                                         "] holds the e4m3 NaN code 0x" + (w.data[i] == 0xFF ? "FF" : "7F"));
  return s;
}

uint8_t fp8_weight_code(const Fp8Checkpoint& ck, int64_t n, int64_t k) {
  return ck.weight->data[size_t(n * ck.weight->shape[1] + k)];
}

float fp8_weight_scale(const Fp8Checkpoint& ck, const Fp8Shape& s, int64_t nb, int64_t kb) {
  if (ck.weight_scale_inv) return scale_at(*ck.weight_scale_inv, size_t(nb * s.Kb + kb));
  if (s.channel) return 1.0f;
  return scale_at(*ck.weight_scale, 0);
}

float fp8_channel_scale(const Fp8Checkpoint& ck, const Fp8Shape& s, int64_t n) {
  if (!s.channel) return 1.0f;
  const StTensor& sc = *ck.weight_scale;
  return load_as_f32(sc.data, size_t(n), sc.dtype == StDType::kF32    ? DType::kF32
                                         : sc.dtype == StDType::kBF16 ? DType::kBF16
                                                                      : DType::kF16);
}

Fp8Packed repack_fp8(const Fp8Checkpoint& ck) {
  Fp8Shape s = validate_fp8(ck);
  Fp8Packed p;
  p.N = s.N;
  p.K = s.K;
  p.Nb = s.Nb;
  p.Kb = s.Kb;
  p.Kp = s.Kb * kFp8Block;
  p.block = s.block;
  p.input_scale = s.input_scale;
  p.ue8m0_act_scales = ck.ue8m0_act_scales;
  const int64_t words = p.Kp / 4;
  p.qw.assign(size_t(words * p.N), 0u);
  const uint8_t* src = ck.weight->data;
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k)
      p.qw[size_t((k / 4) * p.N + n)] |= uint32_t(src[size_t(n * p.K + k)]) << (8 * (k % 4));
  if (s.channel) {
    p.sn.resize(size_t(p.N));
    for (int64_t n = 0; n < p.N; ++n) p.sn[size_t(n)] = fp8_channel_scale(ck, s, n);
  }
  p.sw.resize(size_t(p.Nb * p.Kb));
  for (int64_t nb = 0; nb < p.Nb; ++nb)
    for (int64_t kb = 0; kb < p.Kb; ++kb) p.sw[size_t(nb * p.Kb + kb)] = fp8_weight_scale(ck, s, nb, kb);
  return p;
}

const char* fp8_act_name(Fp8Act a) {
  switch (a) {
    case Fp8Act::kBlockDynamic:
      return "per-token-group dynamic";
    case Fp8Act::kTokenDynamic:
      return "per-token dynamic";
    case Fp8Act::kTensorDynamic:
      return "per-tensor dynamic";
    case Fp8Act::kTensorStatic:
      return "per-tensor static";
    case Fp8Act::kNone:
      return "weight-only (w8a16)";
  }
  return "?";
}

}  // namespace clq
