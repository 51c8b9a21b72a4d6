#include "host/synth/synth.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "host/io/gguf.h"
#include "host/numeric.h"
#include "runtime/status.h"

namespace clq {

namespace {
const int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

StTensor view(const std::string& name, StDType dt, std::vector<int64_t> shape, const void* data, size_t bytes) {
  StTensor t;
  t.name = name;
  t.dtype = dt;
  t.shape = std::move(shape);
  t.data = static_cast<const uint8_t*>(data);
  t.nbytes = bytes;
  return t;
}
}  // namespace

W4Synth::W4Synth(const W4SynthSpec& spec) : spec_(spec) {
  const int64_t K = spec.K, N = spec.N;
  const int bits = spec.bits, per = 32 / bits;
  if (bits != 4 && bits != 8) fail(Status::kInvalidArgument, "synthetic integer layer needs 4 or 8 bits");
  if (K % per || N % per)
    fail(Status::kInvalidArgument, "synthetic " + std::to_string(bits) + "-bit layer needs K and N multiples of " +
                                       std::to_string(per));
  if (bits == 8 && spec.format == W4Format::kAwq) fail(Status::kInvalidArgument, "AWQ is 4-bit only");
  const int gs = spec.group_size;
  const int64_t G = gs == -1 ? 1 : (K + gs - 1) / gs;
  std::mt19937_64 rng(spec.seed);
  std::uniform_int_distribution<uint32_t> nib(0, (1u << bits) - 1);
  // Smaller scales at 8 bits keep the weights' magnitude comparable (codes 16x wider).
  std::uniform_real_distribution<float> sc(bits == 8 ? 0.0001f : 0.002f, bits == 8 ? 0.001f : 0.02f);
  const uint32_t mid = 1u << (bits - 1);  // the symmetric zero (8 or 128)

  // Quantized weights q[k][n], zero points (as stored), scales.
  std::vector<uint8_t> q(static_cast<size_t>(K * N));
  for (auto& v : q) v = uint8_t(nib(rng));
  std::vector<uint8_t> zs(static_cast<size_t>(G * N));
  for (auto& v : zs) {
    if (!spec.symmetric)
      v = uint8_t(nib(rng));
    else
      v = uint8_t(spec.format == W4Format::kGptq ? mid - 1 : mid);  // symmetric v1 stores zero - 1
  }
  scales_.resize(size_t(G * N));
  for (auto& v : scales_) v = f32_to_fp16(sc(rng) * spec.scale_multiplier);

  // Group of each row: k / gs, or for act-order the group of the row's rank in a random order
  // (GPTQ quantizes columns in descending Hessian order, then stores g_idx by original row).
  std::vector<int32_t> group(static_cast<size_t>(K));
  if (spec.act_order) {
    if (spec.format == W4Format::kAwq) fail(Status::kInvalidArgument, "AWQ has no act-order");
    std::vector<int64_t> order(static_cast<size_t>(K));
    std::iota(order.begin(), order.end(), 0);
    if (spec.act_order_seed) {
      std::mt19937_64 order_rng(spec.act_order_seed);
      std::shuffle(order.begin(), order.end(), order_rng);
    } else {
      std::shuffle(order.begin(), order.end(), rng);
    }
    for (int64_t i = 0; i < K; ++i) group[size_t(order[size_t(i)])] = int32_t(gs == -1 ? 0 : i / gs);
    g_idx_ = group;
  } else {
    for (int64_t k = 0; k < K; ++k) group[size_t(k)] = int32_t(gs == -1 ? 0 : k / gs);
  }

  if (spec.format == W4Format::kCompressedTensors && bits == 8) {
    // 8-bit: fp32 scales [N, G] (per channel: [N, 1]) that fp16 cannot hold, so the kernels' fp32
    // scales are exercised; codes packed along K (pack-quantized, stored q + 128) or as signed I8.
    scales_f32_.resize(size_t(N * G));
    for (auto& v : scales_f32_) v = sc(rng) * (1.0f + 0x1.0p-20f);
    t_scales_ = view("weight_scale", StDType::kF32, {N, G}, scales_f32_.data(), scales_f32_.size() * 4);
    if (spec.ct_int_quantized) {
      i8_w_.resize(size_t(N * K));
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) i8_w_[size_t(n * K + k)] = int8_t(int(q[size_t(k * N + n)]) - 128);
      i8_z_.resize(size_t(N * G));
      for (int64_t g = 0; g < G; ++g)
        for (int64_t n = 0; n < N; ++n) i8_z_[size_t(n * G + g)] = int8_t(int(zs[size_t(g * N + n)]) - 128);
      t_qweight_ = view("weight", StDType::kI8, {N, K}, i8_w_.data(), i8_w_.size());
      t_qzeros_ = view("weight_zero_point", StDType::kI8, {N, G}, i8_z_.data(), i8_z_.size());
    } else {
      qweight_.assign(size_t(N * (K / 4)), 0);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n)
          qweight_[size_t(n * (K / 4) + k / 4)] |= int32_t(uint32_t(q[size_t(k * N + n)]) << (8 * (k % 4)));
      qzeros_.assign(size_t(N / 4 * G), 0);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t n = 0; n < N; ++n)
          qzeros_[size_t(n / 4 * G + g)] |= int32_t(uint32_t(zs[size_t(g * N + n)]) << (8 * (n % 4)));
      t_qweight_ = view("weight_packed", StDType::kI32, {N, K / 4}, qweight_.data(), qweight_.size() * 4);
      t_qzeros_ = view("weight_zero_point", StDType::kI32, {N / 4, G}, qzeros_.data(), qzeros_.size() * 4);
    }
    shape_ = {N, K};
    t_shape_ = view("weight_shape", StDType::kI64, {2}, shape_.data(), shape_.size() * 8);
    if (!g_idx_.empty()) t_g_idx_ = view("weight_g_idx", StDType::kI32, {K}, g_idx_.data(), g_idx_.size() * 4);
    return;
  }
  if (spec.format == W4Format::kCompressedTensors) {
    // pack-quantized: [N, K/8] packed along K, zero points [N/8, G] packed along N, bf16 scales
    // [N, G] (what llm-compressor writes), no zero-point tensor when symmetric.
    qweight_.assign(size_t(N * (K / 8)), 0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        qweight_[size_t(n * (K / 8) + k / 8)] |= int32_t(uint32_t(q[size_t(k * N + n)]) << (4 * (k % 8)));
    qzeros_.assign(size_t(N / 8 * G), 0);
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n)
        qzeros_[size_t(n / 8 * G + g)] |= int32_t(uint32_t(zs[size_t(g * N + n)]) << (4 * (n % 8)));
    // bf16 scales that fp16 holds exactly (the kernels' scale type): the fp16 values above, widened.
    std::vector<uint16_t> bf(size_t(N * G));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n) {
        const float v = fp16_to_f32(scales_[size_t(g * N + n)]);
        uint16_t b = f32_to_bf16(v);
        // Round the scale to a value both types hold, so the checkpoint is exactly what both read.
        const uint16_t h = f32_to_fp16(bf16_to_f32(b));
        if (fp16_to_f32(h) != bf16_to_f32(b)) b = f32_to_bf16(fp16_to_f32(h));
        bf[size_t(n * G + g)] = b;
      }
    scales_ = bf;
    t_qweight_ = view("weight_packed", StDType::kI32, {N, K / 8}, qweight_.data(), qweight_.size() * 4);
    t_qzeros_ = view("weight_zero_point", StDType::kI32, {N / 8, G}, qzeros_.data(), qzeros_.size() * 4);
    t_scales_ = view("weight_scale", StDType::kBF16, {N, G}, scales_.data(), scales_.size() * 2);
    shape_ = {N, K};
    t_shape_ = view("weight_shape", StDType::kI64, {2}, shape_.data(), shape_.size() * 8);
    if (!g_idx_.empty()) t_g_idx_ = view("weight_g_idx", StDType::kI32, {K}, g_idx_.data(), g_idx_.size() * 4);
    return;
  }
  if (spec.format == W4Format::kAwq) {
    qweight_.assign(size_t(K * (N / 8)), 0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        qweight_[size_t(k * (N / 8) + n / 8)] |= int32_t(uint32_t(q[size_t(k * N + n)]) << (4 * kAwqNibble[n % 8]));
    qzeros_.assign(size_t(G * (N / 8)), 0);
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n)
        qzeros_[size_t(g * (N / 8) + n / 8)] |= int32_t(uint32_t(zs[size_t(g * N + n)]) << (4 * kAwqNibble[n % 8]));
    t_qweight_ = view("qweight", StDType::kI32, {K, N / 8}, qweight_.data(), qweight_.size() * 4);
  } else {
    // GPTQ at any width: codes packed along K, zeros along N, `per` to a word in order.
    qweight_.assign(size_t(K / per * N), 0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n)
        qweight_[size_t(k / per * N + n)] |= int32_t(uint32_t(q[size_t(k * N + n)]) << (bits * (k % per)));
    qzeros_.assign(size_t(G * (N / per)), 0);
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < N; ++n)
        qzeros_[size_t(g * (N / per) + n / per)] |= int32_t(uint32_t(zs[size_t(g * N + n)]) << (bits * (n % per)));
    t_qweight_ = view("qweight", StDType::kI32, {K / per, N}, qweight_.data(), qweight_.size() * 4);
  }
  t_qzeros_ = view("qzeros", StDType::kI32, {G, N / per}, qzeros_.data(), qzeros_.size() * 4);
  t_scales_ = view("scales", StDType::kF16, {G, N}, scales_.data(), scales_.size() * 2);
  if (!g_idx_.empty()) t_g_idx_ = view("g_idx", StDType::kI32, {K}, g_idx_.data(), g_idx_.size() * 4);
}

W4Checkpoint W4Synth::checkpoint() const {
  W4Checkpoint ck;
  ck.format = spec_.format;
  ck.bits = spec_.bits;
  ck.group_size = spec_.group_size;
  ck.qweight = &t_qweight_;
  ck.qzeros = &t_qzeros_;
  ck.scales = &t_scales_;
  ck.g_idx = g_idx_.empty() ? nullptr : &t_g_idx_;
  if (spec_.format == W4Format::kCompressedTensors && spec_.symmetric) ck.qzeros = nullptr;
  return ck;
}

void W4Synth::add_to(SafetensorsWriter& w, const std::string& prefix) const {
  if (spec_.format == W4Format::kCompressedTensors) {
    // int-quantized (the naive compressor) writes no weight_shape: the I8 weight is its own shape.
    for (const StTensor* t : {&t_qweight_, &t_scales_, &t_shape_})
      if (!(spec_.ct_int_quantized && t == &t_shape_)) w.add(prefix + "." + t->name, t->dtype, t->shape, t->data, t->nbytes);
    if (!spec_.symmetric) w.add(prefix + "." + t_qzeros_.name, t_qzeros_.dtype, t_qzeros_.shape, t_qzeros_.data, t_qzeros_.nbytes);
    if (!g_idx_.empty()) w.add(prefix + ".weight_g_idx", t_g_idx_.dtype, t_g_idx_.shape, t_g_idx_.data, t_g_idx_.nbytes);
    return;
  }
  for (const StTensor* t : {&t_qweight_, &t_qzeros_, &t_scales_})
    w.add(prefix + "." + t->name, t->dtype, t->shape, t->data, t->nbytes);
  if (!g_idx_.empty()) w.add(prefix + ".g_idx", t_g_idx_.dtype, t_g_idx_.shape, t_g_idx_.data, t_g_idx_.nbytes);
}

std::string W4Synth::quantize_config_json() const {
  nlohmann::ordered_json j;
  if (spec_.format == W4Format::kCompressedTensors) {
    // What config.json's quantization_config holds for a W4A16 llm-compressor checkpoint.
    const char* ct_format = spec_.ct_int_quantized ? "int-quantized" : "pack-quantized";
    nlohmann::ordered_json weights = {{"num_bits", spec_.bits},
                                      {"type", "int"},
                                      {"symmetric", spec_.symmetric},
                                      {"strategy", spec_.group_size == -1 ? "channel" : "group"},
                                      {"group_size", spec_.group_size == -1 ? nlohmann::ordered_json(nullptr)
                                                                            : nlohmann::ordered_json(spec_.group_size)},
                                      {"actorder", spec_.act_order ? nlohmann::ordered_json("group") : nlohmann::ordered_json(nullptr)}};
    j = {{"quant_method", "compressed-tensors"},
         {"format", ct_format},
         {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}, {"format", ct_format}}}}},
         {"ignore", {"lm_head"}}};
    if (spec_.w8a8_config)
      j["config_groups"]["group_0"]["input_activations"] = {
          {"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"dynamic", true}, {"strategy", "token"}};
    return j.dump(2);
  }
  if (spec_.format == W4Format::kAwq) {
    j = {{"quant_method", "awq"},
         {"bits", 4},
         {"group_size", spec_.group_size},
         {"zero_point", !spec_.symmetric},
         {"version", "gemm"}};
  } else {
    j = {{"bits", spec_.bits},
         {"group_size", spec_.group_size},
         {"desc_act", spec_.act_order},
         {"sym", spec_.symmetric},
         {"quant_method", "gptq"},
         {"checkpoint_format", w4_format_name(spec_.format)}};
  }
  return j.dump(2);
}

W4SynthSpec w8a8_synth_spec(int64_t N, int64_t K, uint64_t seed) {
  W4SynthSpec s;
  s.format = W4Format::kCompressedTensors;
  s.bits = 8;
  s.ct_int_quantized = true;
  s.symmetric = true;
  s.group_size = -1;
  s.K = K;
  s.N = N;
  s.seed = seed;
  return s;
}

Fp8Synth::Fp8Synth(const Fp8SynthSpec& spec) : spec_(spec) {
  const int64_t N = spec.N, K = spec.K;
  const int64_t Nb = (N + kFp8Block - 1) / kFp8Block, Kb = (K + kFp8Block - 1) / kFp8Block;
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(N * K));
  for (auto& v : w) v = nd(rng);
  auto block_amax = [&](int64_t nb, int64_t kb) {
    float a = 0;
    for (int64_t n = nb * kFp8Block; n < std::min(N, (nb + 1) * kFp8Block); ++n)
      for (int64_t k = kb * kFp8Block; k < std::min(K, (kb + 1) * kFp8Block); ++k)
        a = std::max(a, std::fabs(w[size_t(n * K + k)]));
    return a;
  };
  if (spec.block) {
    scale_.resize(size_t(Nb * Kb));
    for (int64_t nb = 0; nb < Nb; ++nb)
      for (int64_t kb = 0; kb < Kb; ++kb) {
        float sc = std::max(block_amax(nb, kb), 1e-12f) / 448.0f;
        // ue8m0: the next power of two up, so the block still fits e4m3's range.
        if (spec.e8m0_scales) sc = std::ldexp(1.0f, int(std::ceil(std::log2(sc))));
        scale_[size_t(nb * Kb + kb)] = sc;
      }
  } else if (spec.channel) {
    scale_.resize(size_t(N));
    for (int64_t n = 0; n < N; ++n) {
      float a = 0;
      for (int64_t k = 0; k < K; ++k) a = std::max(a, std::fabs(w[size_t(n * K + k)]));
      scale_[size_t(n)] = std::max(a, 1e-12f) / 448.0f;
    }
    input_scale_ = 1.0f / 448.0f;
  } else {
    float a = 0;
    for (float v : w) a = std::max(a, std::fabs(v));
    scale_ = {std::max(a, 1e-12f) / 448.0f};
    input_scale_ = 1.0f / 448.0f;  // activations in [-1, 1): a static scale covering that range
  }
  weight_.resize(size_t(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      float s = spec.block     ? scale_[size_t((n / kFp8Block) * Kb + k / kFp8Block)]
                : spec.channel ? scale_[size_t(n)]
                               : scale_[0];
      weight_[size_t(n * K + k)] = f32_to_e4m3(w[size_t(n * K + k)] / s);
    }
  t_weight_ = view("weight", StDType::kF8E4M3, {N, K}, weight_.data(), weight_.size());
  if (spec.block && spec.e8m0_scales) {
    e8m0_.resize(scale_.size());
    for (size_t i = 0; i < scale_.size(); ++i) e8m0_[i] = uint8_t(std::ilogb(scale_[i]) + 127);
    t_scale_ = view("weight_scale_inv", StDType::kF8E8M0, {Nb, Kb}, e8m0_.data(), e8m0_.size());
  } else if (spec.block)
    t_scale_ = view(spec.ct_names ? "weight_scale" : "weight_scale_inv", StDType::kF32, {Nb, Kb}, scale_.data(),
                    scale_.size() * 4);
  else if (spec.channel)
    t_scale_ = view("weight_scale", StDType::kF32, {N, 1}, scale_.data(), scale_.size() * 4);
  else
    t_scale_ = view("weight_scale", StDType::kF32, {}, scale_.data(), 4);
  t_input_scale_ = view("input_scale", StDType::kF32, {}, &input_scale_, 4);
}

Fp8Checkpoint Fp8Synth::checkpoint() const {
  Fp8Checkpoint ck;
  ck.weight = &t_weight_;
  if (spec_.block)
    ck.weight_scale_inv = &t_scale_;
  else
    ck.weight_scale = &t_scale_;
  if (!spec_.block && spec_.with_input_scale) ck.input_scale = &t_input_scale_;
  return ck;
}

void Fp8Synth::add_to(SafetensorsWriter& w, const std::string& prefix) const {
  Fp8Checkpoint ck = checkpoint();
  for (const StTensor* t : {ck.weight, ck.weight_scale_inv, ck.weight_scale, ck.input_scale})
    if (t) w.add(prefix + "." + t->name, t->dtype, t->shape, t->data, t->nbytes);
}

std::vector<uint8_t> random_activations(int64_t M, int64_t K, DType t, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint8_t> out(size_t(M * K) * dtype_size(t));
  for (int64_t i = 0; i < M * K; ++i) {
    float v = u(rng);
    if (v == 0.0f) v = 0.5f;
    store_from_f32(out.data(), size_t(i), t, v);
  }
  return out;
}

std::vector<uint8_t> random_gguf_blocks(uint32_t type, int64_t N, int64_t K, uint64_t seed) {
  const size_t bytes = ggml_tensor_bytes(type, {K, N});
  const GgmlTypeInfo* ti = ggml_type_info(type);
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> b(bytes);
  for (auto& v : b) v = uint8_t(rng());
  std::uniform_real_distribution<float> mag(0.5f, 2.0f);
  auto put_f16 = [&](size_t at, float v) {
    const uint16_t h = f32_to_fp16(v);
    b[at] = uint8_t(h), b[at + 1] = uint8_t(h >> 8);
  };
  for (size_t blk = 0; blk < bytes / size_t(ti->block_bytes); ++blk) {
    const size_t o = blk * size_t(ti->block_bytes);
    switch (GgmlType(type)) {
      case GgmlType::kQ4_0: put_f16(o, 0.02f * mag(rng)); break;
      case GgmlType::kQ8_0: put_f16(o, 0.002f * mag(rng)); break;
      case GgmlType::kQ4_K: put_f16(o, 0.002f * mag(rng)), put_f16(o + 2, 0.004f * mag(rng)); break;
      case GgmlType::kQ6_K: put_f16(o + 208, 0.0005f * mag(rng)); break;
      default: fail(Status::kInvalidArgument, std::string("random_gguf_blocks: type ") + ggml_type_name(type));
    }
  }
  return b;
}

namespace {
const char* kMoeProj[3] = {"gate_proj", "up_proj", "down_proj"};
}  // namespace

MoeSynth::MoeSynth(const MoeSynthSpec& spec) : spec_(spec) {
  const int64_t E = spec.E, H = spec.H, I = spec.I;
  ck_.kind = spec.kind;
  ck_.ue8m0_act_scales = spec.ue8m0_act_scales && spec.kind == MoeWeightKind::kFp8;
  ck_.E = E;
  ck_.H = H;
  ck_.I = I;
  std::mt19937_64 rng(spec.seed);
  // Reserve first: the checkpoint keeps pointers into these vectors.
  dense_.reserve(size_t(3 * E));
  dense_t_.reserve(size_t(3 * E));
  w4_.reserve(size_t(3 * E));
  f8_.reserve(size_t(3 * E));
  for (int64_t e = 0; e < E; ++e)
    for (int p = 0; p < 3; ++p) {
      const int64_t out_dim = p == 2 ? H : I, in_dim = p == 2 ? I : H;
      const uint64_t seed = spec.seed * 1000003u + uint64_t(e * 3 + p);
      if (spec.share_expert_weights && e > 0) {
        if (spec.kind == MoeWeightKind::kDense)
          (p == 0 ? ck_.gate_d : p == 1 ? ck_.up_d : ck_.down_d).push_back(&dense_t_[size_t(p)]);
        else if (spec.kind == MoeWeightKind::kInt4 || spec.kind == MoeWeightKind::kInt8)
          (p == 0 ? ck_.gate_q : p == 1 ? ck_.up_q : ck_.down_q).push_back(w4_[size_t(p)].checkpoint());
        else
          (p == 0 ? ck_.gate_f : p == 1 ? ck_.up_f : ck_.down_f).push_back(f8_[size_t(p)].checkpoint());
        continue;
      }
      if (spec.kind == MoeWeightKind::kDense) {
        std::normal_distribution<float> nd(0.0f, 0.05f);
        std::vector<uint16_t> v(static_cast<size_t>(out_dim * in_dim));
        for (auto& x : v) {
          float f = nd(rng);
          x = spec.dense_dtype == DType::kF16 ? f32_to_fp16(f) : f32_to_bf16(f);
        }
        dense_.push_back(std::move(v));
        StTensor t;
        t.name = kMoeProj[p] + std::string(".weight");
        t.dtype = spec.dense_dtype == DType::kF16 ? StDType::kF16 : StDType::kBF16;
        t.shape = {out_dim, in_dim};
        t.data = reinterpret_cast<const uint8_t*>(dense_.back().data());
        t.nbytes = dense_.back().size() * 2;
        dense_t_.push_back(t);
        (p == 0 ? ck_.gate_d : p == 1 ? ck_.up_d : ck_.down_d).push_back(&dense_t_.back());
      } else if (spec.kind == MoeWeightKind::kInt4 || spec.kind == MoeWeightKind::kInt8) {
        W4SynthSpec s;
        s.format = spec.int4_format;
        s.bits = spec.kind == MoeWeightKind::kInt8 ? 8 : 4;
        s.ct_int_quantized = s.bits == 8 && s.format == W4Format::kCompressedTensors;
        s.symmetric = spec.symmetric;
        s.K = in_dim;
        s.N = out_dim;
        s.group_size = spec.group_size;
        s.seed = seed;
        s.act_order = spec.act_order;
        s.act_order_seed = spec.seed * 2654435761u + uint64_t(e * 2 + (p == 2 ? 1 : 0)) + 1;  // gate == up
        w4_.emplace_back(s);
        (p == 0 ? ck_.gate_q : p == 1 ? ck_.up_q : ck_.down_q).push_back(w4_.back().checkpoint());
      } else {
        Fp8SynthSpec s;
        s.N = out_dim;
        s.K = in_dim;
        s.seed = seed;
        s.e8m0_scales = spec.fp8_e8m0_scales;
        f8_.emplace_back(s);
        (p == 0 ? ck_.gate_f : p == 1 ? ck_.up_f : ck_.down_f).push_back(f8_.back().checkpoint());
      }
    }
  if (spec.router) {
    std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(H)));
    router_.resize(size_t(E * H));
    for (auto& x : router_) x = f32_to_bf16(nd(rng));
    router_t_.name = "gate.weight";
    router_t_.dtype = StDType::kBF16;
    router_t_.shape = {E, H};
    router_t_.data = reinterpret_cast<const uint8_t*>(router_.data());
    router_t_.nbytes = router_.size() * 2;
    ck_.router = &router_t_;
  }
  if (spec.bias) {
    std::uniform_real_distribution<float> ud(-0.1f, 0.1f);
    bias_.resize(size_t(E));
    for (auto& x : bias_) x = ud(rng);
    bias_t_.name = "gate.e_score_correction_bias";
    bias_t_.dtype = StDType::kF32;
    bias_t_.shape = {E};
    bias_t_.data = reinterpret_cast<const uint8_t*>(bias_.data());
    bias_t_.nbytes = bias_.size() * 4;
    ck_.bias = &bias_t_;
  }
  if (spec.shared_I > 0) {
    MoeSynthSpec s = spec;
    s.E = 1;
    s.I = spec.shared_I;
    s.router = s.bias = s.share_expert_weights = s.mixtral_names = s.shared_gate = false;
    s.shared_I = 0;
    s.seed = spec.seed * 7919u + 17u;
    shared_ = std::make_shared<MoeSynth>(s);
    ck_.shared = std::shared_ptr<const MoeCheckpoint>(shared_, &shared_->ck_);
    if (spec.shared_gate) {
      std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(float(H)));
      shared_gate_.resize(size_t(H));
      for (auto& x : shared_gate_) x = f32_to_bf16(nd(rng));
      shared_gate_t_.name = "shared_expert_gate.weight";
      shared_gate_t_.dtype = StDType::kBF16;
      shared_gate_t_.shape = {1, H};
      shared_gate_t_.data = reinterpret_cast<const uint8_t*>(shared_gate_.data());
      shared_gate_t_.nbytes = shared_gate_.size() * 2;
      ck_.shared_gate = &shared_gate_t_;
    }
  }
}

void MoeSynth::add_projection(SafetensorsWriter& w, int64_t e, int p, const std::string& base) const {
  if (ck_.kind == MoeWeightKind::kDense) {
    const StTensor* t = (p == 0 ? ck_.gate_d : p == 1 ? ck_.up_d : ck_.down_d)[size_t(e)];
    w.add(base + ".weight", t->dtype, t->shape, t->data, t->nbytes);
  } else if (ck_.kind == MoeWeightKind::kInt4 || ck_.kind == MoeWeightKind::kInt8) {
    w4_[size_t((spec_.share_expert_weights ? 0 : e) * 3 + p)].add_to(w, base);
  } else {
    f8_[size_t((spec_.share_expert_weights ? 0 : e) * 3 + p)].add_to(w, base);
  }
}

std::string MoeSynth::quantize_config_json() const {
  if (w4_.empty()) return "";
  return w4_.front().quantize_config_json();
}

void MoeSynth::add_to(SafetensorsWriter& w, const std::string& P) const {
  if (ck_.router) w.add(P + ".gate.weight", ck_.router->dtype, ck_.router->shape, ck_.router->data, ck_.router->nbytes);
  if (ck_.bias)
    w.add(P + ".gate.e_score_correction_bias", StDType::kF32, ck_.bias->shape, ck_.bias->data, ck_.bias->nbytes);
  for (int64_t e = 0; e < ck_.E; ++e)
    for (int p = 0; p < 3; ++p) {
      static const char* kMixtral[3] = {"w1", "w3", "w2"};
      add_projection(w, e, p,
                     P + ".experts." + std::to_string(e) + "." + (spec_.mixtral_names ? kMixtral[p] : kMoeProj[p]));
    }
  if (shared_) {
    const std::string S = P + (ck_.shared_gate ? ".shared_expert" : ".shared_experts");
    for (int p = 0; p < 3; ++p) shared_->add_projection(w, 0, p, S + "." + kMoeProj[p]);
    if (ck_.shared_gate)
      w.add(P + ".shared_expert_gate.weight", StDType::kBF16, shared_gate_t_.shape, shared_gate_t_.data,
            shared_gate_t_.nbytes);
  }
}

}  // namespace clq
