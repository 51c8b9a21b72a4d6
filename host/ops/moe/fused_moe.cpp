#include "host/ops/moe/fused_moe.h"
#include "host/ops/launcher.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/caps/caps.h"
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

std::vector<double> moe_reference(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                  const std::vector<int>& ids, const std::vector<float>& weights, int K,
                                  const std::vector<int>& expert_map) {
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
                                       Fp8Act::kBlockDynamic);
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
        Fp8ActHost q = quantize_fp8_host(af.data(), DType::kF32, 1, I, Fp8Act::kBlockDynamic);
        for (int64_t n = 0; n < I; ++n)
          a[size_t(n)] = double(e4m3_to_f32(q.codes[size_t(n)])) * q.scales[size_t(n / 128)];
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
  return out;
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

void FusedMoe::grow(cl::Buffer& b, size_t& have, size_t need) {
  oputil::grow_scratch(c_, b, have, std::max<size_t>(need, 4));
}

FusedMoe::FusedMoe(Context& c, const MoeCheckpoint& m) : c_(c), kind_(m.kind), E_(m.E), H_(m.H), I_(m.I) {
  if (!m.validated) validate_moe(m);
  const GemvTuning& t = gemv_tuning(c.features());
  const GemvLayout l1 = gemv_layout(t, 2 * I_), l2 = gemv_layout(t, H_);
  cols_ = l1.cols;
  rows_max_ = l1.max_rows;
  Np1_ = l1.Np;
  Np2_ = l2.Np;
  block_n1_ = l1.block_n;
  block_n2_ = l2.block_n;
  auto upload = [&](const void* data, size_t bytes) {
    cl::Buffer b = c_.alloc(std::max<size_t>(bytes, 4), CL_MEM_READ_ONLY);
    if (bytes) c_.write(b, data, bytes);
    return b;
  };
  std::vector<uint8_t> w1, w2;  // all experts, device layout, bytes
  auto append = [](std::vector<uint8_t>& dst, const void* src, size_t bytes) {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    dst.insert(dst.end(), p, p + bytes);
  };
  if (kind_ == MoeWeightKind::kInt4) {
    std::vector<uint16_t> sc1, sc2;
    std::vector<uint8_t> z1, z2;
    W4Packed first_up, first_down;
    for (int64_t e = 0; e < E_; ++e) {
      W4Packed g = repack_w4(m.gate_q[size_t(e)]), u = repack_w4(m.up_q[size_t(e)]), d = repack_w4(m.down_q[size_t(e)]);
      if (e == 0) {
        Kp1_ = g.Kp;
        Kp2_ = d.Kp;
        first_up = g;
        first_down = d;
        g1_stride_ = g.G * Np1_;
        g2_stride_ = d.G * Np2_;
      }
      // Concatenate gate and up along N: both have the same rows (same K, groups, no act-order).
      const int64_t words = g.Kp / 8;
      std::vector<uint32_t> qw(static_cast<size_t>(words * 2 * I_));
      std::vector<uint16_t> sc(static_cast<size_t>(g.G * 2 * I_));
      std::vector<uint8_t> z(static_cast<size_t>(g.G * 2 * I_));
      for (int64_t w = 0; w < words; ++w) {
        std::copy_n(&g.qw[size_t(w * I_)], I_, &qw[size_t(w * 2 * I_)]);
        std::copy_n(&u.qw[size_t(w * I_)], I_, &qw[size_t(w * 2 * I_ + I_)]);
      }
      for (int64_t r = 0; r < g.G; ++r) {
        std::copy_n(&g.scales[size_t(r * I_)], I_, &sc[size_t(r * 2 * I_)]);
        std::copy_n(&u.scales[size_t(r * I_)], I_, &sc[size_t(r * 2 * I_ + I_)]);
        std::copy_n(&g.zeros[size_t(r * I_)], I_, &z[size_t(r * 2 * I_)]);
        std::copy_n(&u.zeros[size_t(r * I_)], I_, &z[size_t(r * 2 * I_ + I_)]);
      }
      auto b1 = column_blocks(qw.data(), words, 2 * I_, Np1_, block_n1_);
      append(w1, b1.data(), b1.size() * 4);
      auto s1 = pad_columns<uint16_t>(sc.data(), g.G, 2 * I_, Np1_, 0x3C00);
      sc1.insert(sc1.end(), s1.begin(), s1.end());
      auto zz1 = pad_columns<uint8_t>(z.data(), g.G, 2 * I_, Np1_, 0);
      z1.insert(z1.end(), zz1.begin(), zz1.end());
      auto b2 = column_blocks(d.qw.data(), d.Kp / 8, H_, Np2_, block_n2_);
      append(w2, b2.data(), b2.size() * 4);
      auto s2 = pad_columns<uint16_t>(d.scales.data(), d.G, H_, Np2_, 0x3C00);
      sc2.insert(sc2.end(), s2.begin(), s2.end());
      auto zz2 = pad_columns<uint8_t>(d.zeros.data(), d.G, H_, Np2_, 0);
      z2.insert(z2.end(), zz2.begin(), zz2.end());
    }
    w1_stride_ = int64_t(w1.size() / size_t(E_));
    w2_stride_ = int64_t(w2.size() / size_t(E_));
    sc1_ = upload(sc1.data(), sc1.size() * 2);
    sc2_ = upload(sc2.data(), sc2.size() * 2);
    z1_ = upload(z1.data(), z1.size());
    z2_ = upload(z2.data(), z2.size());
    gstart1_ = upload(first_up.gstart.data(), first_up.gstart.size() * 4);
    wgroup1_ = upload(first_up.wgroup.data(), first_up.wgroup.size() * 4);
    perm1_ = upload(first_up.perm.data(), first_up.perm.size() * 4);
    gstart2_ = upload(first_down.gstart.data(), first_down.gstart.size() * 4);
    wgroup2_ = upload(first_down.wgroup.data(), first_down.wgroup.size() * 4);
    perm2_ = upload(first_down.perm.data(), first_down.perm.size() * 4);
    expert_bytes_ = double(w1_stride_ + w2_stride_) + double(g1_stride_ + g2_stride_) * 3;
  } else if (kind_ == MoeWeightKind::kFp8) {
    std::vector<float> sw1, sw2;
    for (int64_t e = 0; e < E_; ++e) {
      Fp8Packed g = repack_fp8(m.gate_f[size_t(e)]), u = repack_fp8(m.up_f[size_t(e)]),
                d = repack_fp8(m.down_f[size_t(e)]);
      Kp1_ = g.Kp;
      Kp2_ = d.Kp;
      const int64_t words = g.Kp / 4;
      std::vector<uint32_t> qw(static_cast<size_t>(words * 2 * I_));
      for (int64_t w = 0; w < words; ++w) {
        std::copy_n(&g.qw[size_t(w * I_)], I_, &qw[size_t(w * 2 * I_)]);
        std::copy_n(&u.qw[size_t(w * I_)], I_, &qw[size_t(w * 2 * I_ + I_)]);
      }
      auto b1 = column_blocks(qw.data(), words, 2 * I_, Np1_, block_n1_);
      append(w1, b1.data(), b1.size() * 4);
      sw1.insert(sw1.end(), g.sw.begin(), g.sw.end());  // gate blocks, then up blocks (I % 128 == 0)
      sw1.insert(sw1.end(), u.sw.begin(), u.sw.end());
      auto b2 = column_blocks(d.qw.data(), d.Kp / 4, H_, Np2_, block_n2_);
      append(w2, b2.data(), b2.size() * 4);
      sw2.insert(sw2.end(), d.sw.begin(), d.sw.end());
      if (e == 0) {
        sw1_stride_ = int64_t(g.sw.size() + u.sw.size());
        sw2_stride_ = int64_t(d.sw.size());
      }
    }
    w1_stride_ = int64_t(w1.size() / size_t(E_));
    w2_stride_ = int64_t(w2.size() / size_t(E_));
    sw1_ = upload(sw1.data(), sw1.size() * 4);
    sw2_ = upload(sw2.data(), sw2.size() * 4);
    expert_bytes_ = double(w1_stride_ + w2_stride_) + double(sw1_stride_ + sw2_stride_) * 4;
  } else {
    dense_bf16_ = m.gate_d[0]->dtype == StDType::kBF16;
    // Activations are staged to K padded to 128 (fp8/quant.cl's widen pass); zero rows pad K.
    Kp1_ = int64_t(round_up(size_t(H_), 128));
    Kp2_ = int64_t(round_up(size_t(I_), 128));
    for (int64_t e = 0; e < E_; ++e) {
      auto rd = [](const StTensor* t, int64_t i) {
        uint16_t v;
        std::memcpy(&v, t->data + 2 * i, 2);
        return v;
      };
      std::vector<uint16_t> k1(size_t(Kp1_ * 2 * I_), 0), k2(size_t(Kp2_ * H_), 0);  // K-major
      for (int64_t n = 0; n < I_; ++n)
        for (int64_t h = 0; h < H_; ++h) {
          k1[size_t(h * 2 * I_ + n)] = rd(m.gate_d[size_t(e)], n * H_ + h);
          k1[size_t(h * 2 * I_ + I_ + n)] = rd(m.up_d[size_t(e)], n * H_ + h);
        }
      for (int64_t h = 0; h < H_; ++h)
        for (int64_t i = 0; i < I_; ++i) k2[size_t(i * H_ + h)] = rd(m.down_d[size_t(e)], h * I_ + i);
      auto b1 = column_blocks(k1.data(), Kp1_, 2 * I_, Np1_, block_n1_);
      append(w1, b1.data(), b1.size() * 2);
      auto b2 = column_blocks(k2.data(), Kp2_, H_, Np2_, block_n2_);
      append(w2, b2.data(), b2.size() * 2);
    }
    w1_stride_ = int64_t(w1.size() / size_t(E_));
    w2_stride_ = int64_t(w2.size() / size_t(E_));
    expert_bytes_ = double(w1_stride_ + w2_stride_);
  }
  w1_ = upload(w1.data(), w1.size());
  w2_ = upload(w2.data(), w2.size());
  // Arguments a weight kind does not use still need a valid buffer.
  cl::Buffer dummy = upload(nullptr, 0);
  for (cl::Buffer* b :
       {&sc1_, &sc2_, &z1_, &z2_, &sw1_, &sw2_, &gstart1_, &gstart2_, &wgroup1_, &wgroup2_, &perm1_, &perm2_})
    if ((*b)() == nullptr) *b = dummy;
  if (m.router) {
    has_router_ = true;
    std::vector<float> r(static_cast<size_t>(E_ * H_));
    DType rt = m.router->dtype == StDType::kF32   ? DType::kF32
               : m.router->dtype == StDType::kF16 ? DType::kF16
                                                  : DType::kBF16;
    for (size_t i = 0; i < r.size(); ++i) r[i] = load_as_f32(m.router->data, i, rt);
    router_ = upload(r.data(), r.size() * 4);
  }
  if (m.bias) {
    has_bias_ = true;
    bias_ = upload(m.bias->data, m.bias->nbytes);
  } else {
    bias_ = dummy;
  }
}

int FusedMoe::block_size_for(int64_t T, int k) const {
  // Rows each active expert gets on average; a block never pads one token to many rows (decode
  // with T = 1 and k = 8 uses blocks of 1: eight rows, no padding).
  const int64_t slots = T * k;
  const int64_t active = std::min<int64_t>(E_, slots);
  const int64_t avg = (slots + active - 1) / active;
  int bs = 1;
  while (bs < avg && bs < 16) bs *= 2;
  return bs;
}

void FusedMoe::can_implement(int64_t T, DType xt, DType yt, size_t x_bytes, size_t y_bytes, const MoeRouting& r,
                             const MoeRunOptions& o) const {
  if (T < 1) fail(Status::kInvalidArgument, "T = " + i2s(T) + ": need at least one token");
  if (r.top_k < 1 || r.top_k > E_)
    fail(Status::kInvalidArgument, "top_k = " + i2s(r.top_k) + " must be in [1, E = " + i2s(E_) + "]");
  if (r.kind == MoeRouting::Kind::kGrouped) {
    if (r.n_group < 1 || E_ % r.n_group != 0)
      fail(Status::kInvalidArgument, "n_group = " + i2s(r.n_group) + " must divide E = " + i2s(E_));
    if (E_ / r.n_group < 2)
      fail(Status::kInvalidArgument,
           "grouped routing scores a group by its two best experts: E / n_group = " + i2s(E_ / r.n_group) + " < 2");
    if (r.topk_group < 1 || r.topk_group > r.n_group)
      fail(Status::kInvalidArgument,
           "topk_group = " + i2s(r.topk_group) + " must be in [1, n_group = " + i2s(r.n_group) + "]");
    if (int64_t(r.top_k) > int64_t(r.topk_group) * (E_ / r.n_group))
      fail(Status::kInvalidArgument, "top_k = " + i2s(r.top_k) + " exceeds the " +
                                         i2s(int64_t(r.topk_group) * (E_ / r.n_group)) + " experts of the kept groups");
    if (!std::isfinite(r.routed_scaling)) fail(Status::kInvalidArgument, "routed_scaling is not finite");
  }
  if (!o.expert_map.empty()) {
    if (int64_t(o.expert_map.size()) != E_)
      fail(Status::kInvalidShape, "expert_map has " + i2s(int64_t(o.expert_map.size())) + " entries, E = " + i2s(E_));
    for (size_t e = 0; e < o.expert_map.size(); ++e)
      if (o.expert_map[e] < -1 || o.expert_map[e] >= E_)
        fail(Status::kInvalidArgument,
             "expert_map[" + i2s(int64_t(e)) + "] = " + i2s(o.expert_map[e]) + " is outside [-1, E)");
  }
  if (o.block_size < 0 || o.block_size > 64 || (o.block_size & (o.block_size - 1)))
    fail(Status::kInvalidArgument,
         "block_size = " + i2s(o.block_size) + " must be 0 (auto) or a power of two up to 64");
  if (xt == DType::kF32 && kind_ == MoeWeightKind::kDense) {
    // fine: activations are widened to fp32 anyway
  }
  if (x_bytes < size_t(T * H_) * dtype_size(xt))
    fail(Status::kInvalidArgument, "input buffer holds " + i2s(int64_t(x_bytes)) + " bytes but [T=" + i2s(T) +
                                       ", H=" + i2s(H_) + "] " + dtype_name(xt) + " needs " +
                                       i2s(int64_t(size_t(T * H_) * dtype_size(xt))));
  if (y_bytes < size_t(T * H_) * dtype_size(yt))
    fail(Status::kInvalidArgument, "output buffer holds " + i2s(int64_t(y_bytes)) + " bytes but [T=" + i2s(T) +
                                       ", H=" + i2s(H_) + "] " + dtype_name(yt) + " needs " +
                                       i2s(int64_t(size_t(T * H_) * dtype_size(yt))));
  if (double(T) * r.top_k * std::max(H_, I_) >= 2147483647.0)
    fail(Status::kInvalidShape, "T * top_k * max(H, I) exceeds 32-bit indices; split the batch");
}

std::string FusedMoe::weight_defines() const {
  int kind = kind_ == MoeWeightKind::kDense ? 0 : kind_ == MoeWeightKind::kInt4 ? 1 : 2;
  return "-DWEIGHT_KIND=" + i2s(kind) + " -DVEC_COLS=" + i2s(cols_) + " -DDENSE_BF16=" + (dense_bf16_ ? "1" : "0");
}

OpEvents FusedMoe::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, const MoeRouting& r,
                       const MoeRunOptions& o, const cl::Buffer* logits) {
  size_t xb = 0, yb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  y.getInfo(CL_MEM_SIZE, &yb);
  can_implement(T, xt, yt, xb, yb, r, o);
  if (!logits && !has_router_)
    fail(Status::kInvalidArgument, "this MoE layer has no router weight (gate.weight): pass router logits");
  if (logits) {
    size_t lb = 0;
    logits->getInfo(CL_MEM_SIZE, &lb);
    if (lb < size_t(T * E_) * 4)
      fail(Status::kInvalidArgument,
           "logits buffer holds " + i2s(int64_t(lb)) + " bytes, [T, E] fp32 needs " + i2s(T * E_ * 4));
  }
  const int K = r.top_k;
  grow(logits_, logits_b_, size_t(T * E_) * 4);
  grow(ids_, ids_b_, size_t(T * K) * 4);
  grow(topw_, topw_b_, size_t(T * K) * 4);
  if (use_decode(T, K, o)) return run_decode(x, xt, y, yt, T, K, o, &r, logits);
  const std::string io = "-DIN_DTYPE=" + i2s(dtype_code(xt)) + " -DOUT_DTYPE=2";
  const VariantRow& route = select_variant("moe_routing", c_.features(), T);
  cl::Kernel lk, rk;
  if (!logits) lk = c_.kernel(row_kernel_file(route), "moe_router_logits", io + " -DWR_DTYPE=0 ");
  rk = c_.kernel(row_kernel_file(route), r.kind == MoeRouting::Kind::kSoftmax ? "moe_topk_softmax" : "moe_topk_grouped",
                 io);
  OpEvents ev;  // every launch recorded (bench --breakdown)
  const cl::Buffer& lg = logits ? *logits : logits_;
  if (!logits) {
    set_args(lk, x, router_, logits_, cl_int(T), cl_int(H_), cl_int(E_));
    ev.add(launch(c_, lk, cl::NDRange(round_up(size_t(E_), 16), size_t(T)), cl::NDRange(16, 1), "moe_router_logits"),
           "moe_router_logits");
  }
  if (r.kind == MoeRouting::Kind::kSoftmax) {
    set_args(rk, lg, ids_, topw_, cl_int(T), cl_int(E_), cl_int(K), cl_int(r.renormalize));
  } else {
    set_args(rk, lg, bias_, cl_int(has_bias_), ids_, topw_, cl_int(T), cl_int(E_), cl_int(K), cl_int(r.n_group),
             cl_int(r.topk_group), cl_int(r.renormalize), cl_float(r.routed_scaling), cl_int(r.softmax_scores));
  }
  ev.add(launch(c_, rk, cl::NDRange(round_up(size_t(T), 64)), cl::NDRange(64), "moe_topk"), "moe_topk");
  return run_experts(x, xt, y, yt, T, K, o, ev);
}

OpEvents FusedMoe::run_routed(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T,
                              const std::vector<int>& ids, const std::vector<float>& weights, int K,
                              const MoeRunOptions& o) {
  size_t xb = 0, yb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  y.getInfo(CL_MEM_SIZE, &yb);
  MoeRouting r;
  r.top_k = K;
  can_implement(T, xt, yt, xb, yb, r, o);
  if (int64_t(ids.size()) != T * K || int64_t(weights.size()) != T * K)
    fail(Status::kInvalidShape, "topk ids/weights have " + i2s(int64_t(ids.size())) + "/" +
                                    i2s(int64_t(weights.size())) + " entries, T * k = " + i2s(T * K));
  // An expert id outside [0, E) is an error, never an index.
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= E_)
      fail(Status::kInvalidArgument, "topk_ids[" + i2s(int64_t(i) / K) + "][" + i2s(int64_t(i) % K) +
                                         "] = " + i2s(ids[i]) + " is outside [0, E = " + i2s(E_) + ")");
  grow(ids_, ids_b_, size_t(T * K) * 4);
  grow(topw_, topw_b_, size_t(T * K) * 4);
  c_.write(ids_, ids.data(), ids.size() * 4);
  c_.write(topw_, weights.data(), weights.size() * 4);
  if (use_decode(T, K, o)) return run_decode(x, xt, y, yt, T, K, o, nullptr, nullptr);
  return run_experts(x, xt, y, yt, T, K, o, OpEvents());
}

OpEvents FusedMoe::run_experts(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, int K,
                               const MoeRunOptions& o, OpEvents ev) {
  if (o.splits < 0) fail(Status::kInvalidArgument, "splits = " + i2s(o.splits) + " must be 0 (auto) or positive");
  const DispatchSize d = dispatch_size(T, K, o);
  const int bs = d.bs;
  const int64_t TK = d.TK, S_max = d.S_max, B_max = d.B_max;
  const int rows = std::min(bs, rows_max_ > 4 && bs >= 8 ? rows_max_ : std::min(bs, 4));
  // Scratch (allocations first: nothing below fails half-way for lack of memory).
  grow(counts_, counts_b_, size_t(E_) * 4);
  grow(sorted_, sorted_b_, size_t(S_max) * 4);
  grow(expert_ids_, expert_ids_b_, size_t(B_max) * 4);
  grow(npp_, npp_b_, 4);
  grow(map_, map_b_, size_t(E_) * 4);
  const int64_t Kb1 = Kp1_ / 128 > 0 ? (Kp1_ + 127) / 128 : 1, Kb2 = (Kp2_ + 127) / 128;
  grow(xs1_, xs1_b_, size_t(T * std::max(Kp1_, Kb1 * 128)) * 4);
  grow(aux1_, aux1_b_, size_t(T * std::max(Kp1_ / 8, Kb1)) * 4);
  grow(codes1_, codes1_b_, round_up(size_t(T * H_), 4));
  grow(a_, a_b_, size_t(S_max * I_) * 4);
  grow(xs2_, xs2_b_, size_t(S_max * std::max(Kp2_, Kb2 * 128)) * 4);
  grow(aux2_, aux2_b_, size_t(S_max * std::max(Kp2_ / 8, Kb2)) * 4);
  grow(codes2_, codes2_b_, round_up(size_t(S_max * I_), 4));
  grow(y2_, y2_b_, size_t(TK * H_) * 4);
  if (!o.expert_map.empty()) c_.write(map_, o.expert_map.data(), o.expert_map.size() * 4);

  const std::string wdef = weight_defines();
  const std::string gdef = wdef + " -DGEMV_M=" + i2s(rows) + " -DMOE_BS=" + i2s(bs);
  const VariantRow& al = select_variant("moe_align", c_.features(), T);
  const VariantRow& gv = select_variant(kind_ == MoeWeightKind::kFp8 ? "moe_gemm_fp8" : "moe_gemm", c_.features(), T);
  cl::Kernel align = c_.kernel(row_kernel_file(al), "moe_align", "");
  const std::string gd = gdef;
  cl::Kernel g1 = c_.kernel(row_kernel_file(gv), "moe_expert_gemm", gd + " -DMODE=0 -DIN_DTYPE=0 -DOUT_DTYPE=0");
  cl::Kernel g2 = c_.kernel(row_kernel_file(gv), "moe_expert_gemm", gd + " -DMODE=1 -DIN_DTYPE=0 -DOUT_DTYPE=0");
  cl::Kernel comb =
      c_.kernel(row_kernel_file(gv), "moe_combine", wdef + " -DOUT_DTYPE=" + i2s(dtype_code(yt)));
  // Staging of each GEMM's activations in the layout its weight kind reads (the dense ops' passes).
  const std::string in1 = "-DIN_DTYPE=" + i2s(dtype_code(xt)) + " -DOUT_DTYPE=0";
  cl::Kernel st1, st2;
  if (kind_ == MoeWeightKind::kInt4) {
    st1 = c_.kernel("w4a16/gather.cl", "w4a16_gather_x", in1 + " -DNIBBLE_SCALED=1");
    st2 = c_.kernel("w4a16/gather.cl", "w4a16_gather_x", "-DIN_DTYPE=0 -DOUT_DTYPE=0 -DNIBBLE_SCALED=1");
  } else {
    const char* name = kind_ == MoeWeightKind::kFp8 ? "fp8_quant_group" : "fp8_widen_act";
    st1 = c_.kernel("fp8/quant.cl", name, in1);
    st2 = c_.kernel("fp8/quant.cl", name, "-DIN_DTYPE=0 -DOUT_DTYPE=0");
  }
  auto stage = [&](cl::Kernel& k, const cl::Buffer& src, int64_t M, int64_t Kdim, int64_t Kp, const cl::Buffer& perm,
                   const cl::Buffer& xs, const cl::Buffer& aux, const cl::Buffer& codes, const char* what) {
    if (kind_ == MoeWeightKind::kInt4) {
      set_args(k, src, perm, xs, aux, cl_int(M), cl_int(Kdim), cl_int(Kp));
      return launch(c_, k, cl::NDRange(round_up(size_t(Kp / 8), 64), size_t(M)), cl::NDRange(64, 1), what);
    }
    const int64_t Kb = (Kdim + 127) / 128;
    // fp8_quant_group also writes the codes; fp8_widen_act has no such argument.
    if (kind_ == MoeWeightKind::kFp8)
      set_args(k, src, codes, aux, xs, cl_int(M), cl_int(Kdim), cl_int(Kb));
    else
      set_args(k, src, aux, xs, cl_int(M), cl_int(Kdim), cl_int(Kb));
    return launch(c_, k, cl::NDRange(round_up(size_t(Kb), 16), size_t(M)), cl::NDRange(16, 1), what);
  };
  // Split-K: decode gives few rows, so K is split until the device has enough work-items (the
  // dense gemv's rule); each split's range is whole K units of the weight kind.
  const GemvTuning& tune = gemv_tuning(c_.features());
  auto units_of = [&](int64_t Kp) {
    return kind_ == MoeWeightKind::kInt4 ? Kp / 8 : kind_ == MoeWeightKind::kFp8 ? Kp / 128 : Kp;
  };
  auto splits_for = [&](int64_t N_out, int64_t Kp) {
    const int64_t items = ((N_out + cols_ - 1) / cols_) * (TK + E_ * (bs - 1) + rows - 1) / rows;
    const int64_t target = int64_t(c_.features().compute_units) * tune.items_per_cu;
    const int64_t units = units_of(Kp), min_units = kind_ == MoeWeightKind::kFp8 ? 1 : 64;
    return int(
        std::max<int64_t>(1, std::min<int64_t>((target + items - 1) / std::max<int64_t>(items, 1), units / min_units)));
  };
  const int splits1 = o.splits > 0 ? int(std::min<int64_t>(o.splits, units_of(Kp1_))) : splits_for(I_, Kp1_);
  const int splits2 = o.splits > 0 ? int(std::min<int64_t>(o.splits, units_of(Kp2_))) : splits_for(H_, Kp2_);
  grow(part1_, part1_b_, splits1 > 1 ? size_t(splits1) * size_t(S_max) * size_t(2 * I_) * 4 : 4);
  grow(part2_, part2_b_, splits2 > 1 ? size_t(splits2) * size_t(S_max) * size_t(H_) * 4 : 4);
  cl::Kernel red1, red2;
  if (splits1 > 1) red1 = c_.kernel(row_kernel_file(gv), "moe_reduce_gate_up", gd + " -DMODE=0 -DIN_DTYPE=0 -DOUT_DTYPE=0");
  if (splits2 > 1) red2 = c_.kernel(row_kernel_file(gv), "moe_reduce_down", gd + " -DMODE=1 -DIN_DTYPE=0 -DOUT_DTYPE=0");

  auto gemm = [&](cl::Kernel& k, const cl::Buffer& w, int64_t wstride, const cl::Buffer& sc, const cl::Buffer& z,
                  int64_t gstride, const cl::Buffer& sw, int64_t swstride, const cl::Buffer& gs, const cl::Buffer& wg,
                  const cl::Buffer& xs, const cl::Buffer& aux, int by_token, const cl::Buffer& out, int64_t N_out,
                  int64_t I_off, int64_t Np, int64_t bn, int64_t Kp, int splits, const cl::Buffer& part,
                  const char* what) {
    const int64_t units = units_of(Kp);
    const int64_t per = (units + splits - 1) / splits;
    set_args(k, w, cl_long(wstride), sc, z, cl_long(gstride), sw, cl_long(swstride), gs, wg, xs, aux, cl_int(by_token),
             sorted_, expert_ids_, npp_, topw_, out, cl_int(N_out), cl_int(I_off), cl_int(Np), cl_int(bn), cl_int(Kp),
             cl_int(K), cl_int(TK), cl_int(units), cl_int(per), part, cl_int(S_max));
    const size_t local = size_t(tune.gemv_local);
    return launch(
        c_, k,
        cl::NDRange(round_up(size_t((N_out + cols_ - 1) / cols_), local), size_t(splits), size_t(B_max * (bs / rows))),
        cl::NDRange(local, 1, 1), what);
  };

  set_args(align, ids_, map_, cl_int(!o.expert_map.empty()), cl_int(TK), cl_int(E_), cl_int(bs), counts_, sorted_,
           expert_ids_, npp_);
  ev.add(launch(c_, align, cl::NDRange(256), cl::NDRange(256), "moe_align"), "moe_align");
  ev.add(stage(st1, x, T, H_, Kp1_, perm1_, xs1_, aux1_, codes1_, "moe stage x"), "moe stage x");
  ev.add(gemm(g1, w1_, w1_stride_, sc1_, z1_, g1_stride_, sw1_, sw1_stride_, gstart1_, wgroup1_, xs1_, aux1_, 1, a_,
              I_, I_, Np1_, block_n1_, Kp1_, splits1, part1_, "moe gate_up"),
         "moe gate_up");
  if (splits1 > 1) {
    set_args(red1, part1_, a_, sorted_, npp_, cl_int(I_), cl_int(S_max), cl_int(splits1), cl_int(TK));
    ev.add(launch(c_, red1, cl::NDRange(round_up(size_t(I_), 64), size_t(S_max)), cl::NDRange(64, 1),
                  "moe_reduce_gate_up"),
           "moe_reduce_gate_up");
  }
  ev.add(stage(st2, a_, S_max, I_, Kp2_, perm2_, xs2_, aux2_, codes2_, "moe stage a"), "moe stage a");
  check_cl(c_.queue().enqueueFillBuffer(y2_, cl_float(0.0f), 0, size_t(TK * H_) * 4), "clEnqueueFillBuffer(moe y2)");
  ev.add(gemm(g2, w2_, w2_stride_, sc2_, z2_, g2_stride_, sw2_, sw2_stride_, gstart2_, wgroup2_, xs2_, aux2_, 0, y2_,
              H_, 0, Np2_, block_n2_, Kp2_, splits2, part2_, "moe down"),
         "moe down");
  if (splits2 > 1) {
    set_args(red2, part2_, y2_, sorted_, npp_, topw_, cl_int(H_), cl_int(S_max), cl_int(splits2), cl_int(TK));
    ev.add(launch(c_, red2, cl::NDRange(round_up(size_t(H_), 64), size_t(S_max)), cl::NDRange(64, 1),
                  "moe_reduce_down"),
           "moe_reduce_down");
  }
  set_args(comb, y2_, y, cl_int(T), cl_int(K), cl_int(H_));
  ev.add(launch(c_, comb, cl::NDRange(round_up(size_t(H_), 64), size_t(T)), cl::NDRange(64, 1), "moe_combine"),
         "moe_combine");
  return ev;
}

FusedMoe::DispatchSize FusedMoe::dispatch_size(int64_t T, int K, const MoeRunOptions& o) {
  // Every expert's run padded to whole blocks: at most TK + E (bs - 1) slots (SPEC section 5).
  DispatchSize d;
  d.bs = o.block_size > 0 ? o.block_size : block_size_for(T, K);
  d.TK = T * K;
  d.S_max = int64_t(round_up(size_t(d.TK + E_ * (d.bs - 1)), size_t(d.bs)));
  d.B_max = d.S_max / d.bs;
  last_T_ = T;  // what read_alignment() reads back
  last_k_ = K;
  last_bs_ = d.bs;
  return d;
}

bool FusedMoe::use_decode(int64_t T, int K, const MoeRunOptions& o) const {
  if (o.decode < 0) return false;
  std::string why;
  if (kind_ == MoeWeightKind::kInt4) why = "int4 experts";
  else if (!o.expert_map.empty()) why = "an expert_map (skipped slots never reach the combine)";
  else if (E_ > 1024) why = "E = " + i2s(E_) + " > 1024 (moe_topk_align keeps a token's scores in local memory)";
  else if (T * K > 512) why = "T * top_k = " + i2s(T * K) + " > 512";
  else if (H_ % 4 != 0 || I_ % 4 != 0) why = "H = " + i2s(H_) + ", I = " + i2s(I_) + " (both must be multiples of 4)";
  else if (kind_ == MoeWeightKind::kFp8 && I_ % 128 != 0) why = "FP8 experts with I = " + i2s(I_) + " % 128 != 0";
  else if (o.block_size > 16) why = "block_size = " + i2s(o.block_size) + " > 16";
  if (!why.empty()) {
    if (o.decode > 0) fail(Status::kInvalidArgument, "the MoE decode path does not apply: " + why);
    return false;
  }
  return o.decode > 0 || c_.features().is_gpu;
}

int FusedMoe::decode_splits(int64_t tiles, int64_t blocks, int64_t units, int64_t min_units, int forced) const {
  if (forced > 0) return int(std::min<int64_t>(forced, units));
  // Enough work-groups for every compute unit to hold several (the decode GEMMs are a stream).
  const int64_t target = int64_t(c_.features().compute_units) * 8;
  const int64_t groups = std::max<int64_t>(1, tiles * blocks);
  return int(std::max<int64_t>(1, std::min<int64_t>((target + groups - 1) / groups, units / min_units)));
}

OpEvents FusedMoe::run_decode(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, int K,
                              const MoeRunOptions& o, const MoeRouting* r, const cl::Buffer* logits) {
  const bool fp8 = kind_ == MoeWeightKind::kFp8;
  const DispatchSize d = dispatch_size(T, K, o);
  const int bs = d.bs;
  const int64_t TK = d.TK, S_max = d.S_max, B_max = d.B_max;
  const int64_t Kb1 = (H_ + 127) / 128;
  const int64_t tiles1 = (I_ + 127) / 128, tiles2 = (H_ + 255) / 256;
  // K units: FP8 128-row blocks; dense quads of 4 rows.
  const int64_t units1 = fp8 ? Kp1_ / 128 : H_ / 4, units2 = fp8 ? Kp2_ / 128 : I_ / 4;
  const int64_t blocks = std::min<int64_t>(B_max, TK);
  int splits1 = decode_splits(tiles1, blocks, units1, fp8 ? 1 : 32, o.splits);
  int splits2 = decode_splits(tiles2, blocks, units2, fp8 ? 1 : 32, o.splits);
  const int64_t per1 = (units1 + splits1 - 1) / splits1, per2 = (units2 + splits2 - 1) / splits2;
  splits1 = int((units1 + per1 - 1) / per1);
  splits2 = int((units2 + per2 - 1) / per2);
  // Scratch (allocations first: nothing below fails half-way for lack of memory).
  grow(counts_, counts_b_, size_t(E_) * 4);
  grow(sorted_, sorted_b_, size_t(S_max) * 4);
  grow(expert_ids_, expert_ids_b_, size_t(B_max) * 4);
  grow(npp_, npp_b_, 4);
  grow(map_, map_b_, size_t(E_) * 4);
  // FP8: x as e4m3 values, its scales, the scales of a (dense: unused, but real buffers).
  grow(xs1_, xs1_b_, fp8 ? size_t(T * Kb1 * 128) * 4 : 4);
  grow(aux1_, aux1_b_, fp8 ? size_t(T * Kb1) * 4 : 4);
  grow(aux2_, aux2_b_, fp8 ? size_t(S_max * (I_ / 128)) * 4 : 4);
  grow(a_, a_b_, size_t(S_max * I_) * 4);
  grow(y2_, y2_b_, size_t(TK * H_) * 4);
  grow(part1_, part1_b_, splits1 > 1 ? size_t(splits1) * size_t(S_max) * size_t(2 * I_) * 4 : 4);
  grow(part2_, part2_b_, splits2 > 1 ? size_t(splits2) * size_t(S_max) * size_t(H_) * 4 : 4);
  // The counters return to zero at the end of every call (the last group resets its own), so
  // only a new buffer needs clearing.
  auto counters = [&](cl::Buffer& b, size_t& have, size_t need) {
    if (oputil::grow_scratch(c_, b, have, std::max<size_t>(need, 4))) c_.fill_u32(b, 0u, have);
  };
  counters(cnt1_, cnt1_b_, size_t(B_max * tiles1) * 4);
  counters(cnt2_, cnt2_b_, size_t(B_max * tiles2) * 4);
  counters(tokcnt_, tokcnt_b_, size_t(T * tiles2) * 4);

  const std::string in = "-DIN_DTYPE=" + i2s(dtype_code(xt));
  const std::string wdef = "-DWEIGHT_KIND=" + i2s(fp8 ? 2 : 0) + " -DDENSE_BF16=" + (dense_bf16_ ? "1" : "0") +
                           " -DMOE_BS=" + i2s(bs);
  const VariantRow& route = select_variant("moe_routing", c_.features(), T);
  OpEvents ev;  // every launch recorded (bench --breakdown)
  auto mark = [&](const cl::Event& e, const char* name) { ev.add(e, name); };
  // 1. Router logits and FP8 staging in one launch.
  const bool logit_groups = r && !logits;
  if (logit_groups || fp8) {
    cl::Kernel k = c_.kernel("moe/decode.cl", "moe_route_stage", in);
    const int64_t nl = logit_groups ? E_ : 0, nq = fp8 ? Kb1 : 0;
    set_args(k, x, router_, logits_, cl_int(nl), xs1_, aux1_, cl_int(T), cl_int(H_), cl_int(E_), cl_int(Kb1));
    mark(launch(c_, k, cl::NDRange(size_t(nl + nq) * 64, size_t(T)), cl::NDRange(64, 1), "moe_route_stage"),
         "moe_route_stage");
  }
  // 2. Top-k and alignment (one work-group), or the alignment of host-given ids.
  if (r) {
    const cl::Buffer& lg = logits ? *logits : logits_;
    cl::Kernel k = c_.kernel(row_kernel_file(route), "moe_topk_align", "-DIN_DTYPE=0");
    const bool grouped = r->kind == MoeRouting::Kind::kGrouped;
    set_args(k, lg, cl_int(grouped), bias_, cl_int(has_bias_), ids_, topw_, cl_int(T), cl_int(E_), cl_int(K),
             cl_int(r->n_group), cl_int(r->topk_group), cl_int(r->renormalize), cl_float(r->routed_scaling),
             cl_int(r->softmax_scores), cl_int(bs), counts_, sorted_, expert_ids_, npp_);
    mark(launch(c_, k, cl::NDRange(256), cl::NDRange(256), "moe_topk_align"), "moe_topk_align");
  } else {
    const VariantRow& al = select_variant("moe_align", c_.features(), T);
    cl::Kernel k = c_.kernel(row_kernel_file(al), "moe_align", "");
    set_args(k, ids_, map_, cl_int(0), cl_int(TK), cl_int(E_), cl_int(bs), counts_, sorted_, expert_ids_, npp_);
    mark(launch(c_, k, cl::NDRange(256), cl::NDRange(256), "moe_align"), "moe_align");
  }
  // 3. gate_up with the SwiGLU (FP8: and the down GEMM's activation quantization).
  cl::Kernel g1 = c_.kernel("moe/decode.cl", "moe_decode_gate_up", in + std::string(" -DX_IN=") + (fp8 ? "0 " : "1 ") + wdef);
  set_args(g1, w1_, cl_long(w1_stride_), sw1_, cl_long(sw1_stride_), fp8 ? xs1_ : x, aux1_, sorted_, expert_ids_,
           npp_, a_, aux2_, cl_int(I_), cl_int(fp8 ? Kb1 * 128 : H_), cl_int(block_n1_), cl_int(Kp1_), cl_int(K), cl_int(TK),
           cl_int(units1), cl_int(per1), part1_, cnt1_, cl_int(S_max));
  mark(launch(c_, g1, cl::NDRange(size_t(tiles1) * 256, size_t(splits1), size_t(B_max)), cl::NDRange(256, 1, 1),
              "moe_decode_gate_up"),
       "moe_decode_gate_up");
  // 4. down with the routing weight and the combine.
  cl::Kernel g2 = c_.kernel("moe/decode.cl", "moe_decode_down",
                            "-DIN_DTYPE=0 -DX_IN=0 -DOUT_DTYPE=" + i2s(dtype_code(yt)) + " " + wdef);
  set_args(g2, w2_, cl_long(w2_stride_), sw2_, cl_long(sw2_stride_), a_, aux2_, sorted_, expert_ids_, npp_, topw_, y2_, y,
           cl_int(H_), cl_int(I_), cl_int(block_n2_), cl_int(Kp2_), cl_int(K), cl_int(TK), cl_int(units2),
           cl_int(per2), part2_, cnt2_, tokcnt_, cl_int(S_max));
  mark(launch(c_, g2, cl::NDRange(size_t(tiles2) * 256, size_t(splits2), size_t(B_max)), cl::NDRange(256, 1, 1),
              "moe_decode_down"),
       "moe_decode_down");
  return ev;
}

void FusedMoe::read_routing(std::vector<int>* ids, std::vector<float>* weights) const {
  ids->resize(size_t(last_T_ * last_k_));
  weights->resize(ids->size());
  c_.read(ids_, ids->data(), ids->size() * 4);
  c_.read(topw_, weights->data(), weights->size() * 4);
}

void FusedMoe::read_alignment(std::vector<int>* sorted_ids, std::vector<int>* expert_ids, int* num_post_padded) const {
  c_.read(npp_, num_post_padded, 4);
  sorted_ids->resize(size_t(*num_post_padded));
  c_.read(sorted_, sorted_ids->data(), sorted_ids->size() * 4);
  expert_ids->resize(last_bs_ > 0 ? size_t(*num_post_padded / last_bs_) : 0);
  c_.read(expert_ids_, expert_ids->data(), expert_ids->size() * 4);
}

void FusedMoe::read_logits(std::vector<float>* logits) const {
  logits->resize(size_t(last_T_ * E_));
  c_.read(logits_, logits->data(), logits->size() * 4);
}

}  // namespace clq
