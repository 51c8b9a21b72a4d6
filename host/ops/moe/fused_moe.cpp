#include "host/ops/moe/fused_moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/caps/caps.h"
#include "host/formats/w8.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/layout.h"
#include "host/ops/op_util.h"
#include "host/caps/tuning.h"
#include "runtime/status.h"

namespace clq {

using oputil::dtype_code;
using oputil::i2s;
using oputil::round_up;

namespace {
bool taken(const std::vector<char>& t, int e) {
  return t[size_t(e)] != 0;
}

double silu(double v) {
  return v / (1.0 + std::exp(-v));
}
}  // namespace

// ---- host routing twin ------------------------------------------------------------------------

void moe_route_host(const std::vector<float>& logits, int64_t T, int64_t E, const MoeRouting& r, const float* bias,
                    std::vector<int>* ids, std::vector<float>* weights) {
  const int K = r.top_k;
  ids->assign(size_t(T * K), 0);
  weights->assign(size_t(T * K), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    const float* l = &logits[size_t(t * E)];
    float mx = l[0], sum = 0.0f;
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
    for (int64_t e = 0; e < E; ++e) sum += std::exp(l[e] - mx);
    std::vector<char> tk(size_t(E), 0);
    float wsum = 0.0f;
    if (r.kind == MoeRouting::Kind::kSoftmax) {
      for (int j = 0; j < K; ++j) {
        int best = -1;
        for (int e = 0; e < int(E); ++e)
          if (!taken(tk, e) && (best < 0 || l[e] > l[best])) best = e;
        tk[size_t(best)] = 1;
        float p = std::exp(l[best] - mx) / sum;
        (*ids)[size_t(t * K + j)] = best;
        (*weights)[size_t(t * K + j)] = p;
        wsum += p;
      }
      if (r.renormalize)
        for (int j = 0; j < K; ++j) (*weights)[size_t(t * K + j)] /= wsum;
      continue;
    }
    auto score = [&](int e) { return r.softmax_scores ? std::exp(l[e] - mx) / sum : 1.0f / (1.0f + std::exp(-l[e])); };
    auto biased = [&](int e) { return score(e) + (bias ? bias[e] : 0.0f); };
    const int gsz = int(E) / r.n_group;
    std::vector<char> kept(size_t(r.n_group), 0);
    for (int pick = 0; pick < r.topk_group; ++pick) {
      int best_g = -1;
      float best_s = 0;
      for (int g = 0; g < r.n_group; ++g) {
        if (kept[size_t(g)]) continue;
        float m1 = -INFINITY, m2 = -INFINITY;
        for (int e = g * gsz; e < (g + 1) * gsz; ++e) {
          float b = biased(e);
          if (b > m1) {
            m2 = m1;
            m1 = b;
          } else if (b > m2) {
            m2 = b;
          }
        }
        if (best_g < 0 || m1 + m2 > best_s) {
          best_g = g;
          best_s = m1 + m2;
        }
      }
      kept[size_t(best_g)] = 1;
    }
    for (int j = 0; j < K; ++j) {
      int best = -1;
      float best_b = 0;
      for (int e = 0; e < int(E); ++e) {
        if (taken(tk, e) || !kept[size_t(e / gsz)]) continue;
        float b = biased(e);
        if (best < 0 || b > best_b) {
          best = e;
          best_b = b;
        }
      }
      tk[size_t(best)] = 1;
      float s = score(best);
      (*ids)[size_t(t * K + j)] = best;
      (*weights)[size_t(t * K + j)] = s;
      wsum += s;
    }
    for (int j = 0; j < K; ++j) {
      float w = (*weights)[size_t(t * K + j)];
      if (r.renormalize) w /= wsum;
      (*weights)[size_t(t * K + j)] = w * r.routed_scaling;
    }
  }
}

// ---- fp64 reference ---------------------------------------------------------------------------

namespace {
// Whether r (a value over its scale) sits so close to a midpoint between two e4m3 values that
// fp32 sums in another order may round it the other way; returns the other code then.
bool e4m3_near_midpoint(double r, uint8_t code, uint8_t* other) {
  const double v = e4m3_to_f32(code);
  const int mag = code & 0x7F, sign = code & 0x80;
  const int omag = std::fabs(r) > std::fabs(v) ? mag + 1 : mag - 1;
  if (omag < 0 || omag > 0x7E) return false;
  const double ov = std::fabs(double(e4m3_to_f32(uint8_t(omag))));
  const double mid = 0.5 * (std::fabs(v) + ov);
  if (std::fabs(std::fabs(r) - mid) > 1e-5 * mid) return false;
  *other = uint8_t(sign | omag);
  return true;
}

// flip: the index (in order of discovery) of an ambiguous FP8 `a` value to round the other way,
// or -1; *ambiguous counts them.
std::vector<double> moe_reference_impl(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                       const std::vector<int>& ids, const std::vector<float>& weights, int K,
                                       const std::vector<int>& expert_map, int flip, int* ambiguous) {
  int seen = 0;
  const int64_t H = m.H, I = m.I;
  std::vector<double> out(size_t(T * H), 0.0);
  std::vector<std::vector<double>> w13(size_t(m.E)), w2(size_t(m.E));
  auto weights_of = [&](int64_t e) {
    if (w13[size_t(e)].empty()) {
      auto g = moe_dequantize(m, e, 0), u = moe_dequantize(m, e, 1);
      w13[size_t(e)] = g;
      w13[size_t(e)].insert(w13[size_t(e)].end(), u.begin(), u.end());  // [2I][H]
      w2[size_t(e)] = moe_dequantize(m, e, 2);                          // [H][I]
    }
  };
  const bool fp8 = m.kind == MoeWeightKind::kFp8;
  for (int64_t t = 0; t < T; ++t) {
    // The activation row each expert sees: x itself, or its e4m3 quantization for FP8 experts.
    std::vector<double> xr(static_cast<size_t>(H));
    if (fp8) {
      Fp8ActHost q = quantize_fp8_host(static_cast<const uint8_t*>(x) + size_t(t * H) * dtype_size(xt), xt, 1, H,
                                       Fp8Act::kBlockDynamic, 0.0f, m.ue8m0_act_scales);
      for (int64_t h = 0; h < H; ++h)
        xr[size_t(h)] = double(e4m3_to_f32(q.codes[size_t(h)])) * q.scales[size_t(h / 128)];
    } else {
      for (int64_t h = 0; h < H; ++h) xr[size_t(h)] = load_as_f32(x, size_t(t * H + h), xt);
    }
    for (int j = 0; j < K; ++j) {
      const int e = ids[size_t(t * K + j)];
      if (!expert_map.empty() && expert_map[size_t(e)] < 0) continue;
      weights_of(e);
      const std::vector<double>& W13 = w13[size_t(e)];
      std::vector<double> a(static_cast<size_t>(I));
      for (int64_t n = 0; n < I; ++n) {
        double g = 0, u = 0;
        for (int64_t h = 0; h < H; ++h) {
          g += xr[size_t(h)] * W13[size_t(n * H + h)];
          u += xr[size_t(h)] * W13[size_t((I + n) * H + h)];
        }
        a[size_t(n)] = silu(g) * u;
      }
      if (fp8) {
        std::vector<float> af(static_cast<size_t>(I));
        for (int64_t n = 0; n < I; ++n) af[size_t(n)] = float(a[size_t(n)]);
        Fp8ActHost q = quantize_fp8_host(af.data(), DType::kF32, 1, I, Fp8Act::kBlockDynamic, 0.0f, m.ue8m0_act_scales);
        for (int64_t n = 0; n < I; ++n) {
          uint8_t code = q.codes[size_t(n)], other = 0;
          const float s = q.scales[size_t(n / 128)];
          if (e4m3_near_midpoint(double(af[size_t(n)]) / double(s), code, &other)) {
            if (seen == flip) code = other;
            ++seen;
          }
          a[size_t(n)] = double(e4m3_to_f32(code)) * s;
        }
      }
      const double w = weights[size_t(t * K + j)];
      const std::vector<double>& W2 = w2[size_t(e)];
      for (int64_t h = 0; h < H; ++h) {
        double acc = 0;
        for (int64_t n = 0; n < I; ++n) acc += a[size_t(n)] * W2[size_t(h * I + n)];
        out[size_t(t * H + h)] += w * acc;
      }
    }
  }
  if (ambiguous) *ambiguous = seen;
  return out;
}
}  // namespace

std::vector<double> moe_reference(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                  const std::vector<int>& ids, const std::vector<float>& weights, int K,
                                  const std::vector<int>& expert_map) {
  return moe_reference_impl(m, x, xt, T, ids, weights, K, expert_map, -1, nullptr);
}

std::vector<std::vector<double>> moe_reference_alternatives(const MoeCheckpoint& m, const void* x, DType xt,
                                                            int64_t T, const std::vector<int>& ids,
                                                            const std::vector<float>& weights, int K,
                                                            const std::vector<int>& expert_map, int max_flips) {
  int ambiguous = 0;
  std::vector<std::vector<double>> refs;
  refs.push_back(moe_reference_impl(m, x, xt, T, ids, weights, K, expert_map, -1, &ambiguous));
  for (int i = 0; i < std::min(ambiguous, max_flips); ++i)
    refs.push_back(moe_reference_impl(m, x, xt, T, ids, weights, K, expert_map, i, nullptr));
  return refs;
}

// ---- the op -----------------------------------------------------------------------------------

MoeRouting moe_routing_from_config(const MoeConfig& c) {
  MoeRouting r;
  r.top_k = c.top_k.value_or(0);
  r.renormalize = c.renormalize;
  if (c.grouped) {
    r.kind = MoeRouting::Kind::kGrouped;
    r.n_group = c.n_group;
    r.topk_group = c.topk_group;
    r.routed_scaling = c.routed_scaling;
    r.softmax_scores = c.softmax_scores;
  }
  return r;
}

namespace {

void append_bytes(std::vector<uint8_t>& dst, const void* src, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  dst.insert(dst.end(), p, p + bytes);
}

// What the two integer expert widths differ in; pack_int_experts is the arrangement they share.
template <class Packed>
struct IntExpertWidth;
template <>
struct IntExpertWidth<W4Packed> {
  using Scale = uint16_t;  // fp16 bits
  using Zero = uint8_t;
  static constexpr int kCodesPerWord = 8;
  static constexpr Scale kScalePad = 0x3C00;  // fp16 1.0
  static constexpr const char* kName = "int4";
  static W4Packed repack(const W4Checkpoint& ck) { return repack_w4(ck); }
};
template <>
struct IntExpertWidth<W8Packed> {
  using Scale = float;
  using Zero = uint16_t;  // true zeros reach 256
  static constexpr int kCodesPerWord = 4;
  static constexpr Scale kScalePad = 1.0f;
  static constexpr const char* kName = "int8";
  static W8Packed repack(const W4Checkpoint& ck) { return repack_w8(ck); }
};

// Integer experts (W4Packed int4, W8Packed int8: the dense ops' layouts) into the fused layout:
// gate and up side by side along N, one expert after another, column blocks of the gemv
// geometry, scales and zeros per group padded to the same columns. Appends the codes to w1 and
// w2 (uploaded by the caller with the other kinds'), uploads the rest into L.
template <class Packed, class Upload>
void pack_int_experts(const MoeCheckpoint& m, MoeDeviceLayer& L, std::vector<uint8_t>& w1, std::vector<uint8_t>& w2,
                      const Upload& upload) {
  using W = IntExpertWidth<Packed>;
  using Scale = typename W::Scale;
  using Zero = typename W::Zero;
  std::vector<Scale> sc1, sc2;
  std::vector<Zero> z1, z2;
  Packed first_up, first_down;
  // Each expert's K order (its rows sorted by g_idx, act-order); validate_moe made the group
  // layouts (gstart, wgroup, Kp) the same for every expert, so only the orders can differ.
  std::vector<int32_t> perm1, perm2;
  const int64_t I = L.I;
  for (int64_t e = 0; e < L.E; ++e) {
    Packed g = W::repack(m.gate_q[size_t(e)]), u = W::repack(m.up_q[size_t(e)]), d = W::repack(m.down_q[size_t(e)]);
    if (e == 0) {
      L.Kp1 = g.Kp;
      L.Kp2 = d.Kp;
      first_up = g;
      first_down = d;
      L.g1_stride = g.G * L.lay1.Np;
      L.g2_stride = d.G * L.lay2.Np;
    }
    if (g.perm != u.perm || g.gstart != first_up.gstart || g.wgroup != first_up.wgroup ||
        d.gstart != first_down.gstart || d.wgroup != first_down.wgroup)
      fail(Status::kInternal, "expert " + i2s(e) + ": " + W::kName + " group layout differs after validate_moe");
    L.act1 = L.act1 || g.perm != first_up.perm;
    L.act2 = L.act2 || d.perm != first_down.perm;
    perm1.insert(perm1.end(), g.perm.begin(), g.perm.end());
    perm2.insert(perm2.end(), d.perm.begin(), d.perm.end());
    // Concatenate gate and up along N: both have the same rows (same K, groups and g_idx).
    const int64_t words = g.Kp / W::kCodesPerWord;
    std::vector<uint32_t> qw(static_cast<size_t>(words * 2 * I));
    std::vector<Scale> sc(static_cast<size_t>(g.G * 2 * I));
    std::vector<Zero> z(static_cast<size_t>(g.G * 2 * I));
    for (int64_t w = 0; w < words; ++w) {
      std::copy_n(&g.qw[size_t(w * I)], I, &qw[size_t(w * 2 * I)]);
      std::copy_n(&u.qw[size_t(w * I)], I, &qw[size_t(w * 2 * I + I)]);
    }
    for (int64_t r = 0; r < g.G; ++r) {
      std::copy_n(&g.scales[size_t(r * I)], I, &sc[size_t(r * 2 * I)]);
      std::copy_n(&u.scales[size_t(r * I)], I, &sc[size_t(r * 2 * I + I)]);
      std::copy_n(&g.zeros[size_t(r * I)], I, &z[size_t(r * 2 * I)]);
      std::copy_n(&u.zeros[size_t(r * I)], I, &z[size_t(r * 2 * I + I)]);
    }
    auto b1 = column_blocks(qw.data(), words, 2 * I, L.lay1.Np, L.lay1.block_n);
    append_bytes(w1, b1.data(), b1.size() * 4);
    auto s1 = pad_columns<Scale>(sc.data(), g.G, 2 * I, L.lay1.Np, W::kScalePad);
    sc1.insert(sc1.end(), s1.begin(), s1.end());
    auto zz1 = pad_columns<Zero>(z.data(), g.G, 2 * I, L.lay1.Np, 0);
    z1.insert(z1.end(), zz1.begin(), zz1.end());
    auto b2 = column_blocks(d.qw.data(), d.Kp / W::kCodesPerWord, L.H, L.lay2.Np, L.lay2.block_n);
    append_bytes(w2, b2.data(), b2.size() * 4);
    auto s2 = pad_columns<Scale>(d.scales.data(), d.G, L.H, L.lay2.Np, W::kScalePad);
    sc2.insert(sc2.end(), s2.begin(), s2.end());
    auto zz2 = pad_columns<Zero>(d.zeros.data(), d.G, L.H, L.lay2.Np, 0);
    z2.insert(z2.end(), zz2.begin(), zz2.end());
  }
  L.w1_stride = int64_t(w1.size() / size_t(L.E));
  L.w2_stride = int64_t(w2.size() / size_t(L.E));
  L.sc1 = upload(sc1.data(), sc1.size() * sizeof(Scale));
  L.sc2 = upload(sc2.data(), sc2.size() * sizeof(Scale));
  L.z1 = upload(z1.data(), z1.size() * sizeof(Zero));
  L.z2 = upload(z2.data(), z2.size() * sizeof(Zero));
  L.gstart1 = upload(first_up.gstart.data(), first_up.gstart.size() * 4);
  L.wgroup1 = upload(first_up.wgroup.data(), first_up.wgroup.size() * 4);
  // One order for all experts: expert 0's, gathered once per token (no act-order cost).
  if (!L.act1) perm1 = first_up.perm;
  if (!L.act2) perm2 = first_down.perm;
  L.perm1 = upload(perm1.data(), perm1.size() * 4);
  L.gstart2 = upload(first_down.gstart.data(), first_down.gstart.size() * 4);
  L.wgroup2 = upload(first_down.wgroup.data(), first_down.wgroup.size() * 4);
  L.perm2 = upload(perm2.data(), perm2.size() * 4);
  // Codes, then one scale and one zero per group and column.
  L.expert_bytes =
      double(L.w1_stride + L.w2_stride) + double(L.g1_stride + L.g2_stride) * double(sizeof(Scale) + sizeof(Zero));
}

}  // namespace

FusedMoe::FusedMoe(Context& c, const MoeCheckpoint& m) : c_(c) {
  L_.kind = m.kind;
  L_.E = m.E;
  L_.H = m.H;
  L_.I = m.I;
  if (!m.validated) validate_moe(m);
  const GemvTuning& t = gemv_tuning(c.features());
  L_.lay1 = gemv_layout(t, 2 * L_.I);
  L_.lay2 = gemv_layout(t, L_.H);
  auto upload = [&](const void* data, size_t bytes) {
    cl::Buffer b = c_.alloc(std::max<size_t>(bytes, 4), CL_MEM_READ_ONLY);
    if (bytes) c_.write(b, data, bytes);
    return b;
  };
  std::vector<uint8_t> w1, w2;  // all experts, device layout, bytes
  if (L_.kind == MoeWeightKind::kInt4) {
    pack_int_experts<W4Packed>(m, L_, w1, w2, upload);
  } else if (L_.kind == MoeWeightKind::kInt8) {
    pack_int_experts<W8Packed>(m, L_, w1, w2, upload);
  } else if (L_.kind == MoeWeightKind::kFp8) {
    std::vector<float> sw1, sw2;
    for (int64_t e = 0; e < L_.E; ++e) {
      Fp8Packed g = repack_fp8(m.gate_f[size_t(e)]), u = repack_fp8(m.up_f[size_t(e)]),
                d = repack_fp8(m.down_f[size_t(e)]);
      L_.Kp1 = g.Kp;
      L_.Kp2 = d.Kp;
      const int64_t words = g.Kp / 4;
      std::vector<uint32_t> qw(static_cast<size_t>(words * 2 * L_.I));
      for (int64_t w = 0; w < words; ++w) {
        std::copy_n(&g.qw[size_t(w * L_.I)], L_.I, &qw[size_t(w * 2 * L_.I)]);
        std::copy_n(&u.qw[size_t(w * L_.I)], L_.I, &qw[size_t(w * 2 * L_.I + L_.I)]);
      }
      auto b1 = column_blocks(qw.data(), words, 2 * L_.I, L_.lay1.Np, L_.lay1.block_n);
      append_bytes(w1, b1.data(), b1.size() * 4);
      sw1.insert(sw1.end(), g.sw.begin(), g.sw.end());  // gate blocks, then up blocks (I % 128 == 0)
      sw1.insert(sw1.end(), u.sw.begin(), u.sw.end());
      auto b2 = column_blocks(d.qw.data(), d.Kp / 4, L_.H, L_.lay2.Np, L_.lay2.block_n);
      append_bytes(w2, b2.data(), b2.size() * 4);
      sw2.insert(sw2.end(), d.sw.begin(), d.sw.end());
      if (e == 0) {
        L_.sw1_stride = int64_t(g.sw.size() + u.sw.size());
        L_.sw2_stride = int64_t(d.sw.size());
      }
    }
    L_.w1_stride = int64_t(w1.size() / size_t(L_.E));
    L_.w2_stride = int64_t(w2.size() / size_t(L_.E));
    L_.sw1 = upload(sw1.data(), sw1.size() * 4);
    L_.sw2 = upload(sw2.data(), sw2.size() * 4);
    L_.ue8m0 = m.ue8m0_act_scales;
    L_.expert_bytes = double(L_.w1_stride + L_.w2_stride) + double(L_.sw1_stride + L_.sw2_stride) * 4;
  } else {
    L_.dense_bf16 = m.gate_d[0]->dtype == StDType::kBF16;
    // Activations are staged to K padded to 128 (fp8/quant.cl's widen pass); zero rows pad K.
    L_.Kp1 = int64_t(round_up(size_t(L_.H), 128));
    L_.Kp2 = int64_t(round_up(size_t(L_.I), 128));
    for (int64_t e = 0; e < L_.E; ++e) {
      auto rd = [](const StTensor* t, int64_t i) {
        uint16_t v;
        std::memcpy(&v, t->data + 2 * i, 2);
        return v;
      };
      std::vector<uint16_t> k1(size_t(L_.Kp1 * 2 * L_.I), 0), k2(size_t(L_.Kp2 * L_.H), 0);  // K-major
      for (int64_t n = 0; n < L_.I; ++n)
        for (int64_t h = 0; h < L_.H; ++h) {
          k1[size_t(h * 2 * L_.I + n)] = rd(m.gate_d[size_t(e)], n * L_.H + h);
          k1[size_t(h * 2 * L_.I + L_.I + n)] = rd(m.up_d[size_t(e)], n * L_.H + h);
        }
      for (int64_t h = 0; h < L_.H; ++h)
        for (int64_t i = 0; i < L_.I; ++i) k2[size_t(i * L_.H + h)] = rd(m.down_d[size_t(e)], h * L_.I + i);
      auto b1 = column_blocks(k1.data(), L_.Kp1, 2 * L_.I, L_.lay1.Np, L_.lay1.block_n);
      append_bytes(w1, b1.data(), b1.size() * 2);
      auto b2 = column_blocks(k2.data(), L_.Kp2, L_.H, L_.lay2.Np, L_.lay2.block_n);
      append_bytes(w2, b2.data(), b2.size() * 2);
    }
    L_.w1_stride = int64_t(w1.size() / size_t(L_.E));
    L_.w2_stride = int64_t(w2.size() / size_t(L_.E));
    L_.expert_bytes = double(L_.w1_stride + L_.w2_stride);
  }
  L_.w1 = upload(w1.data(), w1.size());
  L_.w2 = upload(w2.data(), w2.size());
  // Arguments a weight kind does not use still need a valid buffer.
  cl::Buffer dummy = upload(nullptr, 0);
  for (cl::Buffer* b :
       {&L_.sc1, &L_.sc2, &L_.z1, &L_.z2, &L_.sw1, &L_.sw2, &L_.gstart1, &L_.gstart2, &L_.wgroup1, &L_.wgroup2, &L_.perm1, &L_.perm2})
    if ((*b)() == nullptr) *b = dummy;
  if (m.router) {
    L_.has_router = true;
    std::vector<float> r(static_cast<size_t>(L_.E * L_.H));
    DType rt = m.router->dtype == StDType::kF32   ? DType::kF32
               : m.router->dtype == StDType::kF16 ? DType::kF16
                                                  : DType::kBF16;
    for (size_t i = 0; i < r.size(); ++i) r[i] = load_as_f32(m.router->data, i, rt);
    L_.router = upload(r.data(), r.size() * 4);
  }
  if (m.bias) {
    L_.has_bias = true;
    L_.bias = upload(m.bias->data, m.bias->nbytes);
  } else {
    L_.bias = dummy;
  }
}

void FusedMoe::can_implement(int64_t T, DType xt, DType yt, size_t x_bytes, size_t y_bytes, const MoeRouting& r,
                             const MoeRunOptions& o) const {
  if (T < 1) fail(Status::kInvalidArgument, "T = " + i2s(T) + ": need at least one token");
  if (r.top_k < 1 || r.top_k > L_.E)
    fail(Status::kInvalidArgument, "top_k = " + i2s(r.top_k) + " must be in [1, E = " + i2s(L_.E) + "]");
  if (r.kind == MoeRouting::Kind::kGrouped) {
    if (r.n_group < 1 || L_.E % r.n_group != 0)
      fail(Status::kInvalidArgument, "n_group = " + i2s(r.n_group) + " must divide E = " + i2s(L_.E));
    if (L_.E / r.n_group < 2)
      fail(Status::kInvalidArgument,
           "grouped routing scores a group by its two best experts: E / n_group = " + i2s(L_.E / r.n_group) + " < 2");
    if (r.topk_group < 1 || r.topk_group > r.n_group)
      fail(Status::kInvalidArgument,
           "topk_group = " + i2s(r.topk_group) + " must be in [1, n_group = " + i2s(r.n_group) + "]");
    if (int64_t(r.top_k) > int64_t(r.topk_group) * (L_.E / r.n_group))
      fail(Status::kInvalidArgument, "top_k = " + i2s(r.top_k) + " exceeds the " +
                                         i2s(int64_t(r.topk_group) * (L_.E / r.n_group)) + " experts of the kept groups");
    if (!std::isfinite(r.routed_scaling)) fail(Status::kInvalidArgument, "routed_scaling is not finite");
  }
  if (!o.expert_map.empty()) {
    if (int64_t(o.expert_map.size()) != L_.E)
      fail(Status::kInvalidShape, "expert_map has " + i2s(int64_t(o.expert_map.size())) + " entries, E = " + i2s(L_.E));
    for (size_t e = 0; e < o.expert_map.size(); ++e)
      if (o.expert_map[e] < -1 || o.expert_map[e] >= L_.E)
        fail(Status::kInvalidArgument,
             "expert_map[" + i2s(int64_t(e)) + "] = " + i2s(o.expert_map[e]) + " is outside [-1, E)");
  }
  if (o.splits < 0) fail(Status::kInvalidArgument, "splits = " + i2s(o.splits) + " must be 0 (auto) or positive");
  if (o.block_size < 0 || o.block_size > 64 || (o.block_size & (o.block_size - 1)))
    fail(Status::kInvalidArgument,
         "block_size = " + i2s(o.block_size) + " must be 0 (auto) or a power of two up to 64");
  if (xt == DType::kF32 && L_.kind == MoeWeightKind::kDense) {
    // fine: activations are widened to fp32 anyway
  }
  if (x_bytes < size_t(T * L_.H) * dtype_size(xt))
    fail(Status::kInvalidArgument, "input buffer holds " + i2s(int64_t(x_bytes)) + " bytes but [T=" + i2s(T) +
                                       ", H=" + i2s(L_.H) + "] " + dtype_name(xt) + " needs " +
                                       i2s(int64_t(size_t(T * L_.H) * dtype_size(xt))));
  if (y_bytes < size_t(T * L_.H) * dtype_size(yt))
    fail(Status::kInvalidArgument, "output buffer holds " + i2s(int64_t(y_bytes)) + " bytes but [T=" + i2s(T) +
                                       ", H=" + i2s(L_.H) + "] " + dtype_name(yt) + " needs " +
                                       i2s(int64_t(size_t(T * L_.H) * dtype_size(yt))));
  if (double(T) * r.top_k * std::max(L_.H, L_.I) >= 2147483647.0)
    fail(Status::kInvalidShape, "T * top_k * max(H, I) exceeds 32-bit indices; split the batch");
}

// ---- the dispatcher -----------------------------------------------------------------------------

namespace {
// The fused_moe variant o forces, or "" (then CLQ_VARIANT or the table decides).
std::string forced_variant(const MoeRunOptions& o) {
  const std::string by_flag = o.decode > 0 ? "decode" : o.decode < 0 ? "general" : "";
  if (!by_flag.empty() && !o.variant.empty() && o.variant != by_flag)
    fail(Status::kInvalidArgument,
         "MoeRunOptions: decode = " + i2s(o.decode) + " and variant = '" + o.variant + "' disagree");
  return by_flag.empty() ? o.variant : by_flag;
}

const MoeLauncher& launcher_of(const VariantRow& row) {
  const MoeLauncher* l = moe_launcher(row.variant);
  if (!l) fail(Status::kInternal, std::string(row.op) + " row '" + row.variant + "' has no launcher");
  return *l;
}
}  // namespace

const VariantRow& FusedMoe::choose(const MoeCall& call) const {
  const DeviceFeatures& f = c_.features();
  const int64_t slots = call.M * call.top_k;
  const std::string forced = forced_variant(*call.opt);
  const VariantRow& pick = select_variant("fused_moe", f, slots, forced);
  const Check first = launcher_of(pick).can_implement(L_, call, f);
  if (first.ok()) return pick;
  // A row someone asked for answers for itself; the table's own choice gives way to the next
  // row, in preference order, whose launcher takes the call (int4 experts, an expert map, ...).
  if (!forced.empty() || variant_forced("fused_moe")) first.raise_if_refused();
  const VariantRow* next = nullptr;
  const uint32_t have = feature_mask(f);
  for (auto& r : capability_table()) {
    if (std::string(r.op) != "fused_moe" || &r == &pick || r.stage != VariantStage::kImplemented ||
        (r.requires & ~have) || (r.max_m > 0 && slots > r.max_m) || (r.min_m > 0 && slots < r.min_m))
      continue;
    if (std::string(r.variant) == pick.variant) continue;
    if (next && r.preference <= next->preference) continue;
    if (launcher_of(r).can_implement(L_, call, f).ok()) next = &r;
  }
  if (!next) first.raise_if_refused();
  return *next;
}

const VariantRow& FusedMoe::choose(int64_t T, int top_k, const MoeRunOptions& o) const {
  MoeCall call;
  call.M = T;
  call.top_k = top_k;
  call.opt = &o;
  return choose(call);
}

bool FusedMoe::decode_applies(int64_t T, int top_k, const MoeRunOptions& o) const {
  if (forced_variant(o) == "decode") return true;
  return std::string(choose(T, top_k, o).variant) == "decode";
}

OpEvents FusedMoe::dispatch(MoeCall& call) {
  const VariantRow& row = choose(call);
  OpEvents ev = launcher_of(row).enqueue(c_, L_, call);
  ev.row = &row;
  return ev;
}

OpEvents FusedMoe::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, const MoeRouting& r,
                       const MoeRunOptions& o, const cl::Buffer* logits) {
  MoeCall call;
  static_cast<GemmIo&>(call) = GemmIo{&x, xt, &y, yt, T};
  call.top_k = r.top_k;
  call.routing = &r;
  call.logits = logits;
  call.opt = &o;
  can_implement(T, xt, yt, call.x_bytes(), call.y_bytes(), r, o);
  if (!logits && !L_.has_router)
    fail(Status::kInvalidArgument, "this MoE layer has no router weight (gate.weight): pass router logits");
  if (logits) {
    const size_t lb = GemmIo::buffer_bytes(*logits);
    if (lb < size_t(T * L_.E) * 4)
      fail(Status::kInvalidArgument,
           "logits buffer holds " + i2s(int64_t(lb)) + " bytes, [T, E] fp32 needs " + i2s(T * L_.E * 4));
  }
  const int K = r.top_k;
  MoeDeviceLayer::grow(c_, L_.logits, L_.logits_b, size_t(T * L_.E) * 4);
  MoeDeviceLayer::grow(c_, L_.ids, L_.ids_b, size_t(T * K) * 4);
  MoeDeviceLayer::grow(c_, L_.topw, L_.topw_b, size_t(T * K) * 4);
  return dispatch(call);
}

OpEvents FusedMoe::run_routed(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T,
                              const std::vector<int>& ids, const std::vector<float>& weights, int K,
                              const MoeRunOptions& o) {
  MoeCall call;
  static_cast<GemmIo&>(call) = GemmIo{&x, xt, &y, yt, T};
  call.top_k = K;
  call.opt = &o;
  MoeRouting r;
  r.top_k = K;
  can_implement(T, xt, yt, call.x_bytes(), call.y_bytes(), r, o);
  if (int64_t(ids.size()) != T * K || int64_t(weights.size()) != T * K)
    fail(Status::kInvalidShape, "topk ids/weights have " + i2s(int64_t(ids.size())) + "/" +
                                    i2s(int64_t(weights.size())) + " entries, T * k = " + i2s(T * K));
  // An expert id outside [0, E) is an error, never an index.
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= L_.E)
      fail(Status::kInvalidArgument, "topk_ids[" + i2s(int64_t(i) / K) + "][" + i2s(int64_t(i) % K) +
                                         "] = " + i2s(ids[i]) + " is outside [0, E = " + i2s(L_.E) + ")");
  const VariantRow& row = choose(call);  // refusals before the ids are written
  MoeDeviceLayer::grow(c_, L_.ids, L_.ids_b, size_t(T * K) * 4);
  MoeDeviceLayer::grow(c_, L_.topw, L_.topw_b, size_t(T * K) * 4);
  c_.write(L_.ids, ids.data(), ids.size() * 4);
  c_.write(L_.topw, weights.data(), weights.size() * 4);
  OpEvents ev = launcher_of(row).enqueue(c_, L_, call);
  ev.row = &row;
  return ev;
}

void FusedMoe::read_routing(std::vector<int>* ids, std::vector<float>* weights) const {
  ids->resize(size_t(L_.last_T * L_.last_k));
  weights->resize(ids->size());
  c_.read(L_.ids, ids->data(), ids->size() * 4);
  c_.read(L_.topw, weights->data(), weights->size() * 4);
}

void FusedMoe::read_alignment(std::vector<int>* sorted_ids, std::vector<int>* expert_ids, int* num_post_padded) const {
  c_.read(L_.npp, num_post_padded, 4);
  sorted_ids->resize(size_t(*num_post_padded));
  c_.read(L_.sorted, sorted_ids->data(), sorted_ids->size() * 4);
  expert_ids->resize(L_.last_bs > 0 ? size_t(*num_post_padded / L_.last_bs) : 0);
  c_.read(L_.expert_ids, expert_ids->data(), expert_ids->size() * 4);
}

void FusedMoe::read_logits(std::vector<float>* logits) const {
  logits->resize(size_t(L_.last_T * L_.E));
  c_.read(L_.logits, logits->data(), logits->size() * 4);
}

}  // namespace clq
