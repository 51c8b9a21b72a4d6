#include "host/formats/quantize.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "runtime/status.h"

namespace clq {

namespace {
std::string i2s(int64_t v) { return std::to_string(v); }
constexpr int64_t kMaxDim = int64_t(1) << 31;
}  // namespace

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::kInt4:
      return "int4";
    case QuantMethod::kInt8:
      return "int8";
    case QuantMethod::kFp8Block:
      return "fp8-block";
  }
  return "?";
}

bool quant_method_from_name(const std::string& s, QuantMethod* out) {
  for (QuantMethod m : {QuantMethod::kInt4, QuantMethod::kInt8, QuantMethod::kFp8Block})
    if (s == quant_method_name(m)) {
      *out = m;
      return true;
    }
  return false;
}

void check_quant_spec(const QuantSpec& spec) {
  if (spec.is_int() && spec.group_size != -1 && (spec.group_size < 1 || spec.group_size > (1 << 30)))
    fail(Status::kInvalidArgument, "group size " + i2s(spec.group_size) + " is neither -1 (per channel) nor in [1, 2^30]");
  if (!spec.is_int() && !spec.symmetric)
    fail(Status::kInvalidArgument, "fp8-block quantization is symmetric (one scale per 128 x 128 block); --asym applies to int4 and int8");
}

QuantSpec quant_spec_from(const std::string& method, int group_size, bool asym) {
  QuantSpec spec;
  if (!quant_method_from_name(method, &spec.method))
    fail(Status::kInvalidArgument, "quantization method '" + method + "' is not one of int4, int8, fp8-block");
  if (!spec.is_int() && group_size != 0)
    fail(Status::kInvalidArgument, "group size " + i2s(group_size) +
                                       ": fp8-block has fixed 128 x 128 blocks; a group size applies to int4 and int8");
  if (group_size != 0) spec.group_size = group_size;
  spec.symmetric = !asym;
  check_quant_spec(spec);
  return spec;
}

std::string quant_spec_text(const QuantSpec& s) {
  if (!s.is_int()) return "fp8-block 128x128";
  return std::string(quant_method_name(s.method)) + " " +
         (s.group_size == -1 ? std::string("per-channel") : "g" + i2s(s.group_size)) + (s.symmetric ? " sym" : " asym");
}

double QuantizedWeight::dequant(int64_t n, int64_t k) const {
  const uint8_t c = codes[size_t(n * K + k)];
  if (!spec.is_int()) return double(e4m3_to_f32(c)) * double(scales32[size_t((n / 128) * G + k / 128)]);
  const int64_t g = k / group;
  const double s = fp16_to_f32(scales16[size_t(n * G + g)]);
  const int z = zeros.empty() ? 1 << (spec.bits() - 1) : zeros[size_t(n * G + g)];
  return s * double(int(c) - z);
}

DenseWeight dense_weight(const StTensor& t) {
  DenseWeight w;
  w.name = t.name;
  switch (t.dtype) {
    case StDType::kF16:
      w.dtype = DType::kF16;
      break;
    case StDType::kBF16:
      w.dtype = DType::kBF16;
      break;
    case StDType::kF32:
      w.dtype = DType::kF32;
      break;
    default:
      fail(Status::kFormatError, "tensor '" + t.name + "' has dtype " + st_dtype_name(t.dtype) +
                                     "; online quantization takes F16, BF16 or F32 weights");
  }
  if (t.shape.size() != 2)
    fail(Status::kInvalidShape, "tensor '" + t.name + "' has shape " + t.shape_str() + "; a linear weight is [N, K]");
  w.N = t.shape[0];
  w.K = t.shape[1];
  w.data = t.data;
  return w;
}

void check_quant_input(const DenseWeight& w, const QuantSpec& spec) {
  check_quant_spec(spec);
  if (w.N < 1 || w.K < 1 || w.N >= kMaxDim || w.K >= kMaxDim)
    fail(Status::kInvalidShape, "weight '" + w.name + "' is [" + i2s(w.N) + ", " + i2s(w.K) +
                                    "]; N and K must be in [1, 2^31)");
  const int64_t count = w.N * w.K;
  for (int64_t i = 0; i < count; ++i) {
    const float v = load_as_f32(w.data, size_t(i), w.dtype);
    if (!std::isfinite(v))
      fail(Status::kInvalidArgument, "weight '" + w.name + "'[" + i2s(i / w.K) + "][" + i2s(i % w.K) + "] is " +
                                         std::to_string(v) + "; only finite weights can be quantized");
  }
}

void check_writable(const std::string& layer, int64_t N, int64_t K, const QuantSpec& spec) {
  if (!spec.is_int()) return;
  const int per = 32 / spec.bits();
  if (K % per || N % per)
    fail(Status::kInvalidShape, "layer '" + layer + "' is [N, K] = [" + i2s(N) + ", " + i2s(K) + "]; " +
                                    quant_method_name(spec.method) + " pack-quantized needs N and K multiples of " +
                                    i2s(per) + " (" + i2s(per) + " codes to an int32 word; clquant quantize: leave it out with --layers)");
  if (spec.group_size != -1 && K % spec.group_size)
    fail(Status::kInvalidShape, "layer '" + layer + "' has K = " + i2s(K) + ", not a multiple of group size " +
                                    i2s(spec.group_size) +
                                    " (compressed-tensors readers take whole groups); choose another --group-size or -1"
                                    " (clquant quantize: or leave the layer out with --layers)");
}

void check_quant_result(const QuantizedWeight& q, const std::string& name) {
  if (!q.spec.is_int()) return;
  for (size_t i = 0; i < q.scales16.size(); ++i)
    if ((q.scales16[i] & 0x7C00) == 0x7C00)
      fail(Status::kInvalidArgument, "weight '" + name + "' row " + i2s(int64_t(i) / q.G) + " group " +
                                         i2s(int64_t(i) % q.G) + ": its range needs a scale above 65504, "
                                         "the largest fp16 scale");
}

double QuantError::rel_fro() const { return ref_sq > 0 ? std::sqrt(err_sq / ref_sq) : (err_sq > 0 ? INFINITY : 0.0); }

void QuantError::add(const QuantError& o) {
  err_sq += o.err_sq;
  ref_sq += o.ref_sq;
  max_abs = std::max(max_abs, o.max_abs);
  count += o.count;
}

QuantError quant_error(const DenseWeight& w, const QuantizedWeight& q) {
  QuantError e;
  for (int64_t n = 0; n < q.N; ++n)
    for (int64_t k = 0; k < q.K; ++k) {
      const double ref = load_as_f32(w.data, size_t(n * q.K + k), w.dtype);
      const double d = q.dequant(n, k) - ref;
      e.err_sq += d * d;
      e.ref_sq += ref * ref;
      e.max_abs = std::max(e.max_abs, std::fabs(d));
    }
  e.count = q.N * q.K;
  return e;
}

namespace {
void add_tensor(QuantizedTensors& t, const std::string& name, StDType dt, std::vector<int64_t> shape,
                std::vector<uint8_t> bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  StTensor v;
  v.name = name;
  v.dtype = dt;
  v.shape = std::move(shape);
  v.data = buf->data();
  v.nbytes = buf->size();
  t.storage.push_back(buf);
  t.tensors.push_back(v);
}
template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}
}  // namespace

QuantizedTensors quantized_tensors(const QuantizedWeight& q, const std::string& P) {
  QuantizedTensors t;
  t.spec = q.spec;
  t.group = q.group;
  if (!q.spec.is_int()) {
    add_tensor(t, P + ".weight", StDType::kF8E4M3, {q.N, q.K}, q.codes);
    add_tensor(t, P + ".weight_scale_inv", StDType::kF32, {q.Nb, q.G}, as_bytes(q.scales32));
    return t;
  }
  check_writable(P, q.N, q.K, q.spec);
  const int bits = q.spec.bits(), per = 32 / bits;
  const int64_t Kw = q.K / per;
  std::vector<uint32_t> packed(size_t(q.N * Kw), 0u);
  for (int64_t n = 0; n < q.N; ++n)
    for (int64_t k = 0; k < q.K; ++k)
      packed[size_t(n * Kw + k / per)] |= uint32_t(q.codes[size_t(n * q.K + k)]) << (bits * (k % per));
  add_tensor(t, P + ".weight_packed", StDType::kI32, {q.N, Kw}, as_bytes(packed));
  add_tensor(t, P + ".weight_scale", StDType::kF16, {q.N, q.G}, as_bytes(q.scales16));
  if (!q.zeros.empty()) {
    // compressed-tensors packs zero points along N (packed_dim 0): word [n / per][g].
    std::vector<uint32_t> zp(size_t(q.N / per * q.G), 0u);
    for (int64_t n = 0; n < q.N; ++n)
      for (int64_t g = 0; g < q.G; ++g)
        zp[size_t((n / per) * q.G + g)] |= uint32_t(q.zeros[size_t(n * q.G + g)]) << (bits * (n % per));
    add_tensor(t, P + ".weight_zero_point", StDType::kI32, {q.N / per, q.G}, as_bytes(zp));
  }
  const std::vector<int64_t> nk = {q.N, q.K};
  add_tensor(t, P + ".weight_shape", StDType::kI64, {2}, as_bytes(nk));
  return t;
}

std::vector<StTensor> quantized_layout(const std::string& P, int64_t N, int64_t K, const QuantSpec& spec) {
  std::vector<StTensor> v;
  auto add = [&](const std::string& name, StDType dt, std::vector<int64_t> shape) {
    size_t n = st_dtype_size(dt);
    for (auto d : shape) n *= size_t(d);
    v.push_back(StTensor{P + name, dt, std::move(shape), nullptr, n});
  };
  if (!spec.is_int()) {
    add(".weight", StDType::kF8E4M3, {N, K});
    add(".weight_scale_inv", StDType::kF32, {(N + 127) / 128, (K + 127) / 128});
    return v;
  }
  check_writable(P, N, K, spec);
  const int64_t per = 32 / spec.bits(), group = spec.group_size == -1 ? K : spec.group_size, G = (K + group - 1) / group;
  add(".weight_packed", StDType::kI32, {N, K / per});
  add(".weight_scale", StDType::kF16, {N, G});
  if (!spec.symmetric) add(".weight_zero_point", StDType::kI32, {N / per, G});
  add(".weight_shape", StDType::kI64, {2});
  return v;
}

const StTensor* QuantizedTensors::find(const std::string& suffix) const {
  for (auto& v : tensors)
    if (v.name.size() >= suffix.size() && v.name.compare(v.name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return &v;
  return nullptr;
}

W4Checkpoint QuantizedTensors::w4() const {
  if (!spec.is_int()) fail(Status::kInternal, "QuantizedTensors::w4 on an FP8 layer");
  W4Checkpoint ck;
  ck.format = W4Format::kCompressedTensors;
  ck.bits = spec.bits();
  ck.group_size = spec.group_size;
  ck.qweight = find(".weight_packed");
  ck.scales = find(".weight_scale");
  ck.qzeros = find(".weight_zero_point");
  return ck;
}

Fp8Checkpoint QuantizedTensors::fp8() const {
  if (spec.is_int()) fail(Status::kInternal, "QuantizedTensors::fp8 on an integer layer");
  Fp8Checkpoint ck;
  ck.weight = find(".weight");
  ck.weight_scale_inv = find(".weight_scale_inv");
  return ck;
}

void QuantizedTensors::add_to(SafetensorsWriter& w) const {
  for (auto& t : tensors) w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
}

std::string quantization_config_json(const QuantSpec& spec, const std::vector<std::string>& ignore) {
  using nlohmann::json;
  if (!spec.is_int())
    return json{{"quant_method", "fp8"},
                {"fmt", "e4m3"},
                {"activation_scheme", "dynamic"},
                {"weight_block_size", {128, 128}},
                {"modules_to_not_convert", ignore}}
        .dump();
  json weights = {{"num_bits", spec.bits()},
                  {"type", "int"},
                  {"symmetric", spec.symmetric},
                  {"group_size", spec.group_size == -1 ? json(nullptr) : json(spec.group_size)},
                  {"strategy", spec.group_size == -1 ? "channel" : "group"},
                  {"block_structure", nullptr},
                  {"dynamic", false},
                  {"actorder", nullptr},
                  {"observer", "minmax"},
                  {"observer_kwargs", json::object()}};
  json group = {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", nullptr},
                {"output_activations", nullptr},
                {"format", "pack-quantized"}};
  return json{{"quant_method", "compressed-tensors"},
              {"format", "pack-quantized"},
              {"quantization_status", "compressed"},
              {"config_groups", {{"group_0", group}}},
              {"kv_cache_scheme", nullptr},
              {"global_compression_ratio", nullptr},
              {"ignore", ignore}}
      .dump();
}

bool default_quantizable(const StTensor& t) {
  const std::string suffix = ".weight";
  if (t.shape.size() != 2 || t.name.size() <= suffix.size() ||
      t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  if (t.dtype != StDType::kF16 && t.dtype != StDType::kBF16 && t.dtype != StDType::kF32) return false;
  const std::string layer = t.name.substr(0, t.name.size() - suffix.size());
  size_t begin = 0;
  while (begin <= layer.size()) {
    size_t end = layer.find('.', begin);
    if (end == std::string::npos) end = layer.size();
    const std::string part = layer.substr(begin, end - begin);
    for (const char* no : {"embed_tokens", "embed", "embeddings", "wte", "wpe", "tok_embeddings", "lm_head", "output",
                           "gate", "shared_expert_gate", "router"})
      if (part == no) return false;
    if (part.find("norm") != std::string::npos || part.rfind("ln", 0) == 0) return false;
    begin = end + 1;
  }
  return true;
}

}  // namespace clq
