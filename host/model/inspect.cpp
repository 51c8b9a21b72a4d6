#include "host/model/inspect.h"

#include "host/io/gguf.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "host/caps/caps.h"
#include "host/io/gguf.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/ops/w8a8_int8/w8a8_int8_gemm.h"

namespace clq {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The MoE block a tensor belongs to: P for P.experts.{digits}.* and P.shared_expert(s)(_gate).*.
std::string moe_block_of(const std::string& name) {
  for (const char* mark : {".experts.", ".shared_experts.", ".shared_expert.", ".shared_expert_gate."}) {
    const size_t at = name.find(mark);
    if (at == std::string::npos) continue;
    if (std::string(mark) == ".experts.") {
      const size_t d = at + 9;
      if (d >= name.size() || !std::isdigit(static_cast<unsigned char>(name[d]))) continue;
    }
    return name.substr(0, at);
  }
  return "";
}

// "model.layers.10.mlp" after "model.layers.9.mlp": runs of digits compare as numbers.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && std::isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
      while (j2 < b.size() && std::isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
      const std::string na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
      const std::string ta = na.substr(std::min(na.find_first_not_of('0'), na.size())),
                        tb = nb.substr(std::min(nb.find_first_not_of('0'), nb.size()));
      if (ta.size() != tb.size()) return ta.size() < tb.size();
      if (ta != tb) return ta < tb;
      i = i2;
      j = j2;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

std::string pick(const std::string& op, const DeviceFeatures& f, int64_t M) {
  try {
    return select_variant(op, f, M).variant;
  } catch (const Error& e) {
    return std::string("none: ") + e.what();
  }
}

}  // namespace

std::string LayerInfo::shape() const {
  if (kind == Kind::kLinear) return "K=" + std::to_string(K) + " N=" + std::to_string(N);
  std::string s = "E=" + std::to_string(E) + " H=" + std::to_string(H) + " I=" + std::to_string(I);
  if (shared_I) s += " shared I=" + std::to_string(shared_I);
  return s;
}

std::vector<LayerInfo> find_layers(const Checkpoint& ck) {
  std::set<std::string> moe, linear;
  for (const std::string& n : ck.names_with_prefix("")) {
    const std::string block = moe_block_of(n);
    if (!block.empty()) {
      moe.insert(block);
      continue;
    }
    if (ends_with(n, ".qweight")) {
      linear.insert(n.substr(0, n.size() - 8));
    } else if (ends_with(n, ".weight_packed")) {
      linear.insert(n.substr(0, n.size() - 14));
    } else if (ends_with(n, ".weight")) {
      const StTensor* t = ck.find(n);
      // FP8, or I8 (compressed-tensors int-quantized int8, as the loader reads every I8 weight).
      if (t && (t->dtype == StDType::kF8E4M3 || t->dtype == StDType::kF8E5M2 || t->dtype == StDType::kI8))
        linear.insert(n.substr(0, n.size() - 7));
      // GGUF: a 2-D block-quantized weight is a linear layer (norms and embeddings are F32/F16).
      const GgufTensor* g = ck.gguf() ? ck.gguf()->find(n) : nullptr;
      if (g && g->ne.size() == 2 && ggml_type_info(g->type) && ggml_type_info(g->type)->block > 1)
        linear.insert(n.substr(0, n.size() - 7));
    }
  }
  std::vector<LayerInfo> out;
  for (const std::string& p : linear) {
    // A linear layer inside a MoE block (its router, a stray expert) belongs to the block.
    bool inside = false;
    for (const std::string& m : moe)
      if (p.compare(0, m.size() + 1, m + ".") == 0) inside = true;
    if (inside) continue;
    LayerInfo l;
    l.prefix = p;
    l.kind = LayerInfo::Kind::kLinear;
    out.push_back(l);
  }
  for (const std::string& m : moe) {
    LayerInfo l;
    l.prefix = m;
    l.kind = LayerInfo::Kind::kMoe;
    out.push_back(l);
  }
  std::sort(out.begin(), out.end(),
            [](const LayerInfo& a, const LayerInfo& b) { return natural_less(a.prefix, b.prefix); });
  return out;
}

std::string linear_op(const LinearLayer& l) {
  // W8A8 first: its weights are an int8 layer too, but its activations are quantized as well.
  if (l.is_w8a8()) return W8A8Int8Gemm::kOp;
  if (l.is_int4()) return int_layer_op(l.w4().ck);
  // GGUF Q4_0 runs through W4A16 (GgufGemm), the other block types through gguf_gemm.
  if (l.is_gguf()) return l.gguf().type == uint32_t(GgmlType::kQ4_0) ? W4A16Gemm::kOp : "gguf_gemm";
  const Fp8Layer& q = l.fp8();
  const Fp8Act act = q.shape.block      ? Fp8Act::kBlockDynamic
                     : q.ck.input_scale ? Fp8Act::kTensorStatic
                                        : Fp8Act::kTensorDynamic;
  return Fp8Gemm::op_name(q.shape.block, act);
}

std::string moe_op(const MoeLayer& l) {
  const MoeWeightKind k = l.moe.kind;
  return k == MoeWeightKind::kFp8 ? "moe_gemm_fp8" : k == MoeWeightKind::kInt8 ? "moe_gemm_int8" : "moe_gemm";
}

std::string linear_variant(const LinearLayer& l, const DeviceFeatures& f, int64_t M) {
  return pick(linear_op(l), f, M);
}

std::string moe_variant(const MoeLayer& l, const DeviceFeatures& f, int64_t M) { return pick(moe_op(l), f, M); }

void describe_layer(const LinearLayer& ll, LayerInfo* l) {
  l->format = ll.describe();
  l->op = linear_op(ll);
  l->K = ll.K();
  l->N = ll.N();
  if (ll.is_int4()) l->group_size = ll.w4().shape.group_size;
}

void describe_layer(const MoeLayer& ml, LayerInfo* l) {
  const MoeCheckpoint& m = ml.moe;
  l->op = moe_op(ml);
  l->E = m.E;
  l->H = m.H;
  l->I = m.I;
  l->format = std::string(moe_kind_name(m.kind)) + " experts";
  if (m.kind == MoeWeightKind::kInt4 || m.kind == MoeWeightKind::kInt8) {
    l->group_size = validate_w4(m.gate_q[0]).group_size;
    l->format += std::string(" ") + w4_format_name(m.gate_q[0].format) + " (from " + ml.format_source + "), group " +
                 std::to_string(l->group_size);
    if (moe_uses_act_order(m)) l->format += ", act-order";
  }
  if (m.ue8m0_act_scales) l->format += ", ue8m0 activation scales";
  if (m.shared) {
    l->shared_I = m.shared->I;
    l->format +=
        std::string("; shared experts ") + moe_kind_name(m.shared->kind) + (m.shared_gate ? ", sigmoid-gated" : "");
  }
  if (ml.config) l->format += "; routing from config.json (" + ml.config->model_type + ")";
}

CheckpointInventory inspect_checkpoint(const std::string& path, const DeviceFeatures* device, const LoadOptions& opt) {
  auto ck = std::make_shared<const Checkpoint>(Checkpoint::open(path));
  CheckpointInventory inv;
  inv.path = path;
  inv.layers = find_layers(*ck);
  std::set<std::string> owned;
  for (LayerInfo& l : inv.layers) {
    for (const std::string& n : ck->names_with_prefix(l.prefix + ".")) {
      // A linear prefix such as ...q_proj must not count ...q_proj_b's tensors: only its own.
      if (l.kind == LayerInfo::Kind::kLinear && n.find('.', l.prefix.size() + 1) != std::string::npos) continue;
      if (!owned.insert(n).second) continue;
      l.bytes += ck->tensor_bytes(n);
    }
    try {
      if (l.kind == LayerInfo::Kind::kLinear) {
        const LinearLayer ll = load_linear(ck, l.prefix, opt);
        describe_layer(ll, &l);
        if (device) {
          l.variant_decode = linear_variant(ll, *device, 1);
          l.variant_prefill = linear_variant(ll, *device, 512);
        }
      } else {
        const MoeLayer ml = load_moe(ck, l.prefix, opt);
        describe_layer(ml, &l);
        if (device) {
          l.variant_decode = moe_variant(ml, *device, 1);
          l.variant_prefill = moe_variant(ml, *device, 512);
        }
      }
    } catch (const Error& e) {
      l.status = e.status();
      l.error = e.what();
    }
  }
  for (const std::string& n : ck->names_with_prefix("")) {
    const uint64_t b = ck->tensor_bytes(n);
    inv.total_bytes += b;
    if (!owned.count(n)) {
      ++inv.other_tensors;
      inv.other_bytes += b;
    }
  }
  return inv;
}

}  // namespace clq
