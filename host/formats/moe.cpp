#include "host/formats/moe.h"
#include "host/io/json_file.h"
#include <sys/stat.h>

#include <cmath>
#include <cstring>

#include "host/numeric.h"
#include "runtime/status.h"

namespace clq {

const char* moe_kind_name(MoeWeightKind k) {
  switch (k) {
    case MoeWeightKind::kDense:
      return "dense fp16/bf16";
    case MoeWeightKind::kInt4:
      return "int4";
    case MoeWeightKind::kFp8:
      return "fp8 e4m3 block";
    case MoeWeightKind::kInt8:
      return "int8";
  }
  return "?";
}

namespace {
// Expert projection names: Hugging Face Qwen-MoE / DeepSeek (gate_proj, up_proj, down_proj) and
// Mixtral's block_sparse_moe (w1 gate, w3 up, w2 down).
const char* kProjHf[3] = {"gate_proj", "up_proj", "down_proj"};
const char* kProjMixtral[3] = {"w1", "w3", "w2"};
std::string i2s(int64_t v) {
  return std::to_string(v);
}

void need_shape(const StTensor& t, int64_t a, int64_t b, const std::string& who) {
  if (t.shape.size() != 2 || t.shape[0] != a || t.shape[1] != b)
    fail(Status::kInvalidShape,
         who + " '" + t.name + "' has shape " + t.shape_str() + ", expected [" + i2s(a) + ", " + i2s(b) + "]");
}
}  // namespace

bool moe_uses_mixtral_names(const Checkpoint& ck, const std::string& P) {
  const std::string e0 = P + ".experts.0.w2";
  return ck.find(e0 + ".weight") || ck.find(e0 + ".qweight");
}

std::string moe_gate_proj_name(const Checkpoint& ck, const std::string& P, int64_t e) {
  return P + ".experts." + i2s(e) + "." + (moe_uses_mixtral_names(ck, P) ? "w1" : "gate_proj");
}

namespace {
// The projections of the experts at bases[e] (e.g. "P.experts.3."): kind from expert 0, every
// tensor looked up by name, H and I read off expert 0's down projection.
void read_experts(const Checkpoint& ck, const std::vector<std::string>& bases, const char* const* kProj,
                  std::optional<W4Format> fmt, int group_size, int bits, MoeCheckpoint* out) {
  MoeCheckpoint& m = *out;
  m.E = int64_t(bases.size());
  const std::string e0 = bases[0] + kProj[0];
  // compressed-tensors int-quantized int8: the I8 `.weight` says both format and width.
  bool ct_int8 = false;
  if (ck.find(e0 + ".qweight")) {
    m.kind = bits == 8 ? MoeWeightKind::kInt8 : MoeWeightKind::kInt4;
  } else if (const StTensor* w = ck.find(e0 + ".weight"); w && w->dtype == StDType::kF8E4M3) {
    m.kind = MoeWeightKind::kFp8;
  } else if (w && w->dtype == StDType::kI8) {
    m.kind = MoeWeightKind::kInt8;
    ct_int8 = true;
  } else {
    m.kind = MoeWeightKind::kDense;
  }
  if (bits != 4 && bits != 8)
    fail(Status::kNotSupported, "MoE experts with " + i2s(bits) + "-bit codes: clquant reads 4 and 8 bits");
  if (ct_int8) {
    fmt = W4Format::kCompressedTensors;
  } else if ((m.kind == MoeWeightKind::kInt4 || m.kind == MoeWeightKind::kInt8) && !fmt) {
    fail(Status::kInvalidArgument, std::string(m.kind == MoeWeightKind::kInt8 ? "int8" : "int4") +
                                       " experts need their format (gptq, gptq_v2" +
                                       (m.kind == MoeWeightKind::kInt8 ? "" : " or awq") +
                                       "): pass --format or put quantize_config.json beside the weights");
  }
  if (m.kind == MoeWeightKind::kInt8 && *fmt == W4Format::kAwq)
    fail(Status::kNotSupported, "'" + e0 + ".qweight': AWQ is a 4-bit format, but the experts were declared 8-bit");
  for (const std::string& b : bases)
    for (int p = 0; p < 3; ++p) {
      const std::string base = b + kProj[p];
      if (m.kind == MoeWeightKind::kDense) {
        (p == 0 ? m.gate_d : p == 1 ? m.up_d : m.down_d).push_back(&ck.require(base + ".weight"));
      } else if (ct_int8) {
        // int-quantized: weight I8 [N, K], weight_scale [N, 1] (channel) or [N, G] (group),
        // weight_zero_point I8 [N, G] only when asymmetric, weight_g_idx with act-order.
        W4Checkpoint w;
        w.format = W4Format::kCompressedTensors;
        w.bits = 8;
        w.group_size = group_size;
        w.qweight = &ck.require(base + ".weight");
        w.scales = &ck.require(base + ".weight_scale");
        w.qzeros = ck.find(base + ".weight_zero_point");
        w.g_idx = ck.find(base + ".weight_g_idx");
        (p == 0 ? m.gate_q : p == 1 ? m.up_q : m.down_q).push_back(w);
      } else if (m.kind == MoeWeightKind::kInt4 || m.kind == MoeWeightKind::kInt8) {
        W4Checkpoint w;
        w.format = *fmt;
        w.bits = bits;
        w.group_size = group_size;
        w.qweight = &ck.require(base + ".qweight");
        w.qzeros = &ck.require(base + ".qzeros");
        w.scales = &ck.require(base + ".scales");
        w.g_idx = *fmt == W4Format::kAwq ? nullptr : ck.find(base + ".g_idx");
        (p == 0 ? m.gate_q : p == 1 ? m.up_q : m.down_q).push_back(w);
      } else {
        Fp8Checkpoint w;
        w.weight = &ck.require(base + ".weight");
        w.weight_scale_inv = ck.find(base + ".weight_scale_inv");
        w.weight_scale = ck.find(base + ".weight_scale");
        (p == 0 ? m.gate_f : p == 1 ? m.up_f : m.down_f).push_back(w);
      }
    }
  // H and I from expert 0's down projection ([H, I] as out x in).
  if (m.kind == MoeWeightKind::kDense) {
    m.H = m.down_d[0]->shape.size() == 2 ? m.down_d[0]->shape[0] : 0;
    m.I = m.down_d[0]->shape.size() == 2 ? m.down_d[0]->shape[1] : 0;
  } else if (ct_int8) {
    const StTensor* d = m.down_q[0].qweight;  // I8 [N = H, K = I]
    m.H = d->shape.size() == 2 ? d->shape[0] : 0;
    m.I = d->shape.size() == 2 ? d->shape[1] : 0;
  } else if (m.kind == MoeWeightKind::kInt4 || m.kind == MoeWeightKind::kInt8) {
    // Read off the shapes (scales [G, N]; qweight [K/8, N] GPTQ, [K, N/8] AWQ; [K/4, N] GPTQ
    // 8-bit) rather than validating expert 0 twice: validate_moe checks them against every rule below.
    const W4Checkpoint& d = m.down_q[0];
    m.H = d.scales->shape.size() == 2 ? d.scales->shape[1] : 0;
    m.I = d.qweight->shape.size() == 2 ? d.qweight->shape[0] * (d.format == W4Format::kAwq ? 1 : 32 / bits) : 0;
  } else {
    const StTensor* d = m.down_f[0].weight;
    m.H = d->shape.size() == 2 ? d->shape[0] : 0;
    m.I = d->shape.size() == 2 ? d->shape[1] : 0;
  }
}

bool has_mlp(const Checkpoint& ck, const std::string& base) {
  return ck.find(base + ".down_proj.weight") || ck.find(base + ".down_proj.qweight");
}
}  // namespace

std::string moe_shared_prefix(const Checkpoint& ck, const std::string& P) {
  if (has_mlp(ck, P + ".shared_experts")) return P + ".shared_experts";
  if (has_mlp(ck, P + ".shared_expert")) return P + ".shared_expert";
  return "";
}

MoeCheckpoint moe_from_checkpoint(const Checkpoint& ck, const std::string& P, std::optional<W4Format> fmt,
                                  int group_size, int bits) {
  MoeCheckpoint m;
  m.router = ck.find(P + ".gate.weight");
  m.bias = ck.find(P + ".gate.e_score_correction_bias");
  if (m.bias && (m.bias->dtype == StDType::kBF16 || m.bias->dtype == StDType::kF16)) {
    const DType dt = m.bias->dtype == StDType::kBF16 ? DType::kBF16 : DType::kF16;
    auto data = std::make_shared<std::vector<float>>(size_t(m.bias->numel()));
    for (size_t i = 0; i < data->size(); ++i) (*data)[i] = load_as_f32(m.bias->data, i, dt);
    auto t = std::make_shared<StTensor>(*m.bias);
    t->dtype = StDType::kF32;
    t->data = reinterpret_cast<const uint8_t*>(data->data());
    t->nbytes = data->size() * 4;
    m.bias_widened_data = data;
    m.bias_widened = t;
    m.bias = t.get();
  }
  // Count experts by name, so a missing expert in the middle is an error rather than a short layer.
  const char* const* kProj = moe_uses_mixtral_names(ck, P) ? kProjMixtral : kProjHf;
  int64_t E = 0;
  while (ck.find(P + ".experts." + i2s(E) + "." + kProj[2] + ".weight") ||
         ck.find(P + ".experts." + i2s(E) + "." + kProj[2] + ".qweight"))
    ++E;
  if (E == 0)
    fail(Status::kFormatError, "no experts under '" + P + ".experts.0.*' (looked for gate_proj/up_proj/down_proj and "
                                   "Mixtral's w1/w3/w2; is --prefix right?)");
  if (m.router && m.router->shape.size() == 2 && m.router->shape[0] != E)
    fail(Status::kInvalidShape, "router '" + m.router->name + "' has " + i2s(m.router->shape[0]) +
                                    " rows but the checkpoint holds " + i2s(E) + " consecutive experts");
  std::vector<std::string> bases;
  for (int64_t e = 0; e < E; ++e) bases.push_back(P + ".experts." + i2s(e) + ".");
  read_experts(ck, bases, kProj, fmt, group_size, bits, &m);
  const std::string S = moe_shared_prefix(ck, P);
  if (!S.empty()) {
    auto shared = std::make_shared<MoeCheckpoint>();
    read_experts(ck, {S + "."}, kProjHf, fmt, group_size, bits, shared.get());
    m.shared = shared;
    m.shared_gate = ck.find(P + ".shared_expert_gate.weight");
    // Qwen2-MoE always gates its shared expert; running it ungated would add it at full weight.
    if (!m.shared_gate && S == P + ".shared_expert")
      fail(Status::kFormatError, "'" + S + ".*' is a Qwen2-MoE shared expert, but its gate '" + P +
                                     ".shared_expert_gate.weight' is missing");
  } else if (const StTensor* g = ck.find(P + ".shared_expert_gate.weight")) {
    fail(Status::kFormatError, "'" + g->name + "' gates a shared expert, but there is no '" + P +
                                   ".shared_expert.down_proj.*'");
  }
  validate_moe(m);
  m.validated = true;
  return m;
}

void validate_moe(const MoeCheckpoint& m) {
  const char* const* kProj = kProjHf;  // roles in messages; the tensor names follow them
  const int64_t E = m.E, H = m.H, I = m.I;
  if (E < 1 || H < 1 || I < 1)
    fail(Status::kInvalidShape, "MoE layer has E=" + i2s(E) + " H=" + i2s(H) + " I=" + i2s(I));
  if (E > 1024)
    fail(Status::kNotSupported, "MoE layer has E=" + i2s(E) + " experts; the routing kernels handle up to 1024");
  if (I % 16 != 0)
    fail(Status::kInvalidShape,
         "intermediate size I=" + i2s(I) + " must be a multiple of 16 (fused SwiGLU reads gate/up in aligned vectors)");
  if (H % 8 != 0) fail(Status::kInvalidShape, "hidden size H=" + i2s(H) + " must be a multiple of 8");
  if (m.router) {
    if (m.router->dtype != StDType::kF32 && m.router->dtype != StDType::kF16 && m.router->dtype != StDType::kBF16)
      fail(Status::kFormatError, "router '" + m.router->name + "' has dtype " + st_dtype_name(m.router->dtype) +
                                     ", expected F32, F16 or BF16");
    need_shape(*m.router, E, H, "router");
    // A NaN router weight makes every logit of a token NaN, and top-k over NaN picks experts by
    // accident; refuse it as the expert weights are refused.
    for (int64_t i = 0; i < E * H; ++i) {
      float v;
      if (m.router->dtype == StDType::kF32) {
        std::memcpy(&v, m.router->data + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, m.router->data + 2 * i, 2);
        v = m.router->dtype == StDType::kF16 ? fp16_to_f32(h) : bf16_to_f32(h);
      }
      if (!std::isfinite(v))
        fail(Status::kInvalidArgument, "router '" + m.router->name + "'[" + i2s(i / H) + "][" + i2s(i % H) + "] = " +
                                           std::to_string(v) + " is not finite");
    }
  }
  if (m.bias && (m.bias->dtype != StDType::kF32 || m.bias->shape != std::vector<int64_t>{E}))
    fail(Status::kInvalidShape, "e_score_correction_bias '" + m.bias->name + "' must be F32, BF16 or F16 [" + i2s(E) + "], has " +
                                    st_dtype_name(m.bias->dtype) + " " + m.bias->shape_str());
  if (m.bias)
    for (int64_t e = 0; e < E; ++e) {
      float v;
      std::memcpy(&v, m.bias->data + 4 * e, 4);
      if (!std::isfinite(v))
        fail(Status::kInvalidArgument,
             "e_score_correction_bias '" + m.bias->name + "'[" + i2s(e) + "] = " + std::to_string(v) + " is not finite");
    }
  int group_gate = 0, group_down = 0;
  // Int4: rows per group of expert 0's gate_up and down (with g_idx they need not be contiguous).
  std::vector<int64_t> count_gate, count_down;
  for (int64_t e = 0; e < E; ++e) {
    const std::string who = "expert " + i2s(e);
    if (m.kind == MoeWeightKind::kDense) {
      const StTensor* t[3] = {m.gate_d[size_t(e)], m.up_d[size_t(e)], m.down_d[size_t(e)]};
      for (int p = 0; p < 3; ++p) {
        if (t[p]->dtype != StDType::kF16 && t[p]->dtype != StDType::kBF16)
          fail(Status::kFormatError, who + " " + kProj[p] + " '" + t[p]->name + "' has dtype " +
                                         st_dtype_name(t[p]->dtype) + ", expected F16 or BF16");
        if (t[p]->dtype != t[0]->dtype)
          fail(Status::kFormatError, who + ": " + kProj[p] + " is " + st_dtype_name(t[p]->dtype) +
                                         " but gate_proj is " + st_dtype_name(t[0]->dtype));
        if (t[p]->dtype != m.gate_d[0]->dtype)
          fail(Status::kFormatError,
               who + " is " + st_dtype_name(t[p]->dtype) + " but expert 0 is " + st_dtype_name(m.gate_d[0]->dtype));
        need_shape(*t[p], p == 2 ? H : I, p == 2 ? I : H, who + " " + kProj[p]);
        // Non-finite weights would be multiplied by zero padding into NaN; refuse them.
        const uint16_t* d = reinterpret_cast<const uint16_t*>(t[p]->data);
        for (size_t i = 0; i < t[p]->nbytes / 2; ++i) {
          uint16_t v;
          std::memcpy(&v, d + i, 2);
          bool bad = t[p]->dtype == StDType::kF16 ? (v & 0x7C00) == 0x7C00 : (v & 0x7F80) == 0x7F80;
          if (bad)
            fail(Status::kInvalidArgument,
                 who + " " + kProj[p] + " '" + t[p]->name + "' holds a non-finite value at element " + i2s(int64_t(i)));
        }
      }
    } else if (m.kind == MoeWeightKind::kInt4 || m.kind == MoeWeightKind::kInt8) {
      const W4Checkpoint* w[3] = {&m.gate_q[size_t(e)], &m.up_q[size_t(e)], &m.down_q[size_t(e)]};
      W4Shape sh[3];
      const int bits = m.kind == MoeWeightKind::kInt8 ? 8 : 4;
      for (int p = 0; p < 3; ++p) {
        // The kind decides the kernels' unpacking: a code width other than the kind's would be
        // read as the wrong bits, so it is refused rather than repacked by guess.
        if (w[p]->bits != bits)
          fail(Status::kInvalidArgument, who + " " + kProj[p] + " has " + i2s(w[p]->bits) + "-bit codes but the layer's experts are " +
                                             moe_kind_name(m.kind) + " (" + i2s(bits) + "-bit)");
        if (e > 0 && w[p]->format != m.gate_q[0].format)
          fail(Status::kInvalidArgument, who + " " + kProj[p] + " is " + w4_format_name(w[p]->format) +
                                             " but expert 0 is " + w4_format_name(m.gate_q[0].format));
        // Each projection is validated once; expert 0's group sizes are the reference for the rest.
        const W4Shape s = sh[p] = validate_w4(*w[p]);
        if (e == 0) (p == 2 ? group_down : group_gate) = s.group_size;
        const int64_t K = p == 2 ? I : H, N = p == 2 ? H : I;
        if (s.K != K || s.N != N)
          fail(Status::kInvalidShape, who + " " + kProj[p] + " is K=" + i2s(s.K) + " x N=" + i2s(s.N) +
                                          ", expected K=" + i2s(K) + " x N=" + i2s(N));
        if (s.group_size != (p == 2 ? group_down : group_gate))
          fail(Status::kInvalidShape,
               who + " " + kProj[p] + " has group size " + i2s(s.group_size) + ", unlike expert 0");
        // Act-order (GPTQ desc_act): each expert's rows are sorted by its own g_idx at load and
        // the activations gathered per expert (FusedMoe), but every expert must pack into the same
        // group layout (gstart/wgroup/Kp are shared), i.e. hold as many rows in each group as
        // expert 0; the gate and up rows share one gather of x, so their g_idx must agree.
        if (p == 1) continue;  // up: compared with gate below
        std::vector<int64_t> count(size_t(s.G), 0);
        for (int64_t k = 0; k < s.K; ++k) ++count[size_t(w4_group_of(*w[p], s, k))];
        std::vector<int64_t>& ref = p == 2 ? count_down : count_gate;
        if (e == 0) ref = count;
        for (int64_t g = 0; g < s.G; ++g)
          if (count[size_t(g)] != ref[size_t(g)])
            fail(Status::kNotSupported,
                 who + " " + kProj[p] + ": g_idx puts " + i2s(count[size_t(g)]) + " rows in group " + i2s(g) +
                     " but expert 0 puts " + i2s(ref[size_t(g)]) +
                     "; fused MoE needs every expert's groups to hold the same number of rows (act-order as GPTQ "
                     "writes it, g_idx = perm^-1 / group_size, does)");
      }
      for (int64_t k = 0; k < H; ++k) {
        const int64_t gg = w4_group_of(*w[0], sh[0], k), gu = w4_group_of(*w[1], sh[1], k);
        if (gg != gu)
          fail(Status::kNotSupported,
               who + ": gate_proj and up_proj have different g_idx (g_idx[" + i2s(k) + "] = " + i2s(gg) + " vs " +
                   i2s(gu) + "); fused MoE gathers x once for both (they read the same input, so GPTQ's act-order "
                   "gives them one order)");
      }
    } else {
      const Fp8Checkpoint* w[3] = {&m.gate_f[size_t(e)], &m.up_f[size_t(e)], &m.down_f[size_t(e)]};
      if (I % kFp8Block != 0)
        fail(Status::kInvalidShape,
             "FP8 experts need I % 128 == 0 (gate and up scale blocks meet at a block edge); I = " + i2s(I));
      for (int p = 0; p < 3; ++p) {
        Fp8Shape s = validate_fp8(*w[p]);
        const int64_t K = p == 2 ? I : H, N = p == 2 ? H : I;
        if (s.K != K || s.N != N)
          fail(Status::kInvalidShape, who + " " + kProj[p] + " is [" + i2s(s.N) + ", " + i2s(s.K) + "], expected [" +
                                          i2s(N) + ", " + i2s(K) + "]");
        if (!s.block)
          fail(Status::kNotSupported,
               who + " " + kProj[p] + " has a per-tensor scale; fused MoE takes 128x128 block FP8 experts");
      }
    }
  }
  if (m.shared) {
    const MoeCheckpoint& s = *m.shared;
    const std::string who = "shared expert";
    if (s.E != 1) fail(Status::kInvalidShape, who + ": a block's shared experts are one MLP, not " + i2s(s.E));
    if (s.H != H)
      fail(Status::kInvalidShape, who + " has hidden size " + i2s(s.H) + " but the routed experts have H = " + i2s(H));
    if (!s.validated) {
      try {
        validate_moe(s);
      } catch (const Error& e) {
        fail(e.status(), who + ": " + e.what());
      }
    }
  }
  if (m.shared_gate) {
    const StTensor& g = *m.shared_gate;
    if (!m.shared) fail(Status::kInvalidArgument, "shared_expert_gate '" + g.name + "' without a shared expert");
    if (g.dtype != StDType::kF32 && g.dtype != StDType::kF16 && g.dtype != StDType::kBF16)
      fail(Status::kFormatError, "shared_expert_gate '" + g.name + "' has dtype " + st_dtype_name(g.dtype) +
                                     ", expected F32, F16 or BF16");
    need_shape(g, 1, H, "shared_expert_gate");
    const DType gt = g.dtype == StDType::kF32 ? DType::kF32 : g.dtype == StDType::kF16 ? DType::kF16 : DType::kBF16;
    for (int64_t h = 0; h < H; ++h)
      if (!std::isfinite(load_as_f32(g.data, size_t(h), gt)))
        fail(Status::kInvalidArgument, "shared_expert_gate '" + g.name + "'[0][" + i2s(h) + "] is not finite");
  }
}

bool moe_uses_act_order(const MoeCheckpoint& m) {
  if (m.kind != MoeWeightKind::kInt4 && m.kind != MoeWeightKind::kInt8) return false;
  for (const auto* v : {&m.gate_q, &m.up_q, &m.down_q})
    for (const W4Checkpoint& w : *v) {
      if (!w.g_idx) continue;
      const W4Shape s = validate_w4(w);
      for (int64_t k = 0; k < s.K; ++k)
        if (w4_group_of(w, s, k) != (s.group_size == -1 ? 0 : k / s.group_size)) return true;
    }
  return false;
}

std::vector<double> moe_dequantize(const MoeCheckpoint& m, int64_t e, int which) {
  const int64_t out_dim = which == 2 ? m.H : m.I, in_dim = which == 2 ? m.I : m.H;
  std::vector<double> w(static_cast<size_t>(out_dim * in_dim));
  if (m.kind == MoeWeightKind::kDense) {
    const StTensor* t = (which == 0 ? m.gate_d : which == 1 ? m.up_d : m.down_d)[size_t(e)];
    DType dt = t->dtype == StDType::kF16 ? DType::kF16 : DType::kBF16;
    for (size_t i = 0; i < w.size(); ++i) w[i] = load_as_f32(t->data, i, dt);
  } else if (m.kind == MoeWeightKind::kInt4 || m.kind == MoeWeightKind::kInt8) {
    // dequantize_w4 reads either width (W4Accessor): s * (q - z) from the checkpoint as stored.
    auto kn = dequantize_w4((which == 0 ? m.gate_q : which == 1 ? m.up_q : m.down_q)[size_t(e)]);  // [K=in][N=out]
    for (int64_t o = 0; o < out_dim; ++o)
      for (int64_t i = 0; i < in_dim; ++i) w[size_t(o * in_dim + i)] = kn[size_t(i * out_dim + o)];
  } else {
    const Fp8Checkpoint& f = (which == 0 ? m.gate_f : which == 1 ? m.up_f : m.down_f)[size_t(e)];
    Fp8Shape s = validate_fp8(f);
    for (int64_t o = 0; o < out_dim; ++o)
      for (int64_t i = 0; i < in_dim; ++i)
        w[size_t(o * in_dim + i)] =
            double(e4m3_to_f32(fp8_weight_code(f, o, i))) * double(fp8_weight_scale(f, s, o / 128, i / 128));
  }
  return w;
}

std::optional<MoeConfig> read_moe_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  const nlohmann::json j = read_json_file(path, "model config");
  if (!j.is_object()) fail(Status::kFormatError, path + " is not a JSON object");
  auto str = [&](const char* k) -> std::string {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return "";
    if (!it->is_string()) fail(Status::kFormatError, path + ": " + k + " is not a string");
    return it->get<std::string>();
  };
  auto integer = [&](const char* k) -> std::optional<int> {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 1 << 20)
      fail(Status::kFormatError, path + ": " + k + " is not a non-negative integer");
    return int(it->get<int64_t>());
  };
  auto boolean = [&](const char* k) -> std::optional<bool> {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) fail(Status::kFormatError, path + ": " + k + " is not true or false");
    return it->get<bool>();
  };
  auto number = [&](const char* k) -> std::optional<float> {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() <= 0)
      fail(Status::kFormatError, path + ": " + k + " is not a positive number");
    return float(it->get<double>());
  };
  MoeConfig c;
  c.source = path;
  c.model_type = str("model_type");
  const std::string& mt = c.model_type;
  c.top_k = integer("num_experts_per_tok");
  c.n_shared_experts = integer("n_shared_experts").value_or(0);
  if (mt == "mixtral") {
    c.renormalize = true;  // Mixtral's router always renormalises its top-k softmax weights
  } else if (mt == "qwen2_moe" || mt == "qwen3_moe") {
    c.renormalize = boolean("norm_topk_prob").value_or(false);
    if (mt == "qwen2_moe") {
      if (auto si = integer("shared_expert_intermediate_size"); si && *si > 0) c.shared_intermediate = *si;
    }
  } else if (mt == "deepseek_v2" || mt == "deepseek_v3") {
    const bool v3 = mt == "deepseek_v3";
    const std::string method = str("topk_method").empty() ? (v3 ? "noaux_tc" : "greedy") : str("topk_method");
    const std::string scoring = str("scoring_func").empty() ? (v3 ? "sigmoid" : "softmax") : str("scoring_func");
    if (scoring != "sigmoid" && scoring != "softmax")
      fail(Status::kNotSupported, path + ": scoring_func '" + scoring + "' is neither sigmoid nor softmax");
    c.softmax_scores = scoring == "softmax";
    c.grouped = true;
    if (method == "noaux_tc") {
      c.n_group = integer("n_group").value_or(1);
      c.topk_group = integer("topk_group").value_or(1);
    } else if (method != "greedy") {
      // group_limited_greedy ranks groups by their best score, not by the sum of the two best.
      fail(Status::kNotSupported, path + ": topk_method '" + method + "' is not a routing clquant runs (greedy, noaux_tc)");
    }
    c.renormalize = boolean("norm_topk_prob").value_or(v3);
    if (auto mi = integer("moe_intermediate_size"); mi && c.n_shared_experts > 0)
      c.shared_intermediate = int64_t(*mi) * c.n_shared_experts;
    c.routed_scaling = number("routed_scaling_factor").value_or(1.0f);
    if (c.n_group < 1 || c.topk_group < 1 || c.topk_group > c.n_group)
      fail(Status::kFormatError, path + ": n_group = " + std::to_string(c.n_group) + ", topk_group = " +
                                     std::to_string(c.topk_group) + " (need 1 <= topk_group <= n_group)");
  } else {
    return std::nullopt;
  }
  if (c.top_k && *c.top_k < 1) fail(Status::kFormatError, path + ": num_experts_per_tok must be at least 1");
  return c;
}

}  // namespace clq
