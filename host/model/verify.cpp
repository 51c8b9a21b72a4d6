#include "host/model/verify.h"

#include <chrono>
#include <cmath>
#include <regex>

#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/gguf/gguf_gemm.h"
#include "host/ops/moe/moe_block.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/reference/fp8_reference.h"
#include "host/synth/synth.h"

namespace clq {

namespace {

// Device events whose timestamps cannot be read (rusticl reads zeros) leave the time at 0.
double device_ms(const OpEvents& ev) {
  try {
    return ev.launches.empty() ? 0.0 : ev.ms();
  } catch (const Error&) {
    return 0.0;
  }
}

}  // namespace

LayerCheck verify_layer(Context& c, std::shared_ptr<const Checkpoint> ck, const LayerInfo& info,
                        const VerifyOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  LayerCheck r;
  r.layer = info;
  // bf16 activations as models feed them; fp32 outputs, so the table shows what the kernel's
  // accumulation adds rather than a bf16 rounding that hides it (the tolerances are the same).
  const DType xt = DType::kBF16, yt = DType::kF32;
  const int64_t T = o.tokens;
  // Each layer its own activations, from the seed and the layer's name (FNV-1a: the same on
  // every platform, so a failure reproduces with --layers alone).
  uint64_t seed = 1469598103934665603ull ^ o.seed;
  for (unsigned char ch : info.prefix) seed = (seed ^ ch) * 1099511628211ull;
  try {
    if (info.kind == LayerInfo::Kind::kLinear) {
      const LinearLayer l = load_linear(ck, info.prefix, o.load);
      describe_layer(l, &r.layer);
      const int64_t K = l.K(), N = l.N();
      const auto x = random_activations(T, K, xt, seed);
      const size_t yb = size_t(T * N) * dtype_size(yt);
      cl::Buffer dx = c.alloc(x.size(), CL_MEM_READ_ONLY), dy = c.alloc(yb);
      c.write(dx, x.data(), x.size());
      c.fill_u32(dy, 0xFFFFFFFFu, yb);  // NaN poison: an output never written cannot pass
      std::vector<uint8_t> y(yb);
      std::vector<double> ref;
      OpEvents ev;
      if (l.is_int4()) {
        // int4 and int8 weight-only alike (W8A8 int8 would be checked against the wrong numbers).
        if (l.is_w8a8())
          fail(Status::kNotSupported, "W8A8 int8 layers are checked by clquant gemm --check, not by verify yet");
        auto op = make_int_layer_gemm(c, l.w4().ck);
        op->can_implement(T, xt, yt, x.size(), yb);
        const VariantRow& row = op->choose(T, "");
        r.variant = std::string(row.op) + "/" + row.variant;
        ev = op->run(dx, xt, dy, yt, T, {});
        c.read(dy, y.data(), yb);
        ref = gemm_reference(x.data(), xt, T, K, dequantize_w4(l.w4().ck), N);
        r.tolerance = W4A16Problem::kTolerance;
      } else if (l.is_gguf()) {
        GgufGemm op(c, l.gguf());
        op.can_implement(T, xt, yt, x.size(), yb);
        const VariantRow& row = op.choose(T, {});
        r.variant = std::string(row.op) + "/" + row.variant;
        ev = op.run(dx, xt, dy, yt, T, {});
        c.read(dy, y.data(), yb);
        ref = gemm_reference(x.data(), xt, T, K, dequantize_gguf(l.gguf()), N);
        r.tolerance = GgufProblem::kTolerance;
      } else {
        Fp8Gemm op(c, repack_fp8(l.fp8().ck));
        const Fp8Act act = op.default_act();
        op.can_implement(T, xt, yt, x.size(), yb, act);
        const VariantRow& row = op.choose(T, act, "");
        r.variant = std::string(row.op) + "/" + row.variant;
        ev = op.run(dx, xt, dy, yt, T, {});
        c.read(dy, y.data(), yb);
        ref = fp8_gemm_reference(l.fp8().ck, x.data(), xt, T, act);
        r.tolerance = Fp8Problem::kTolerance;
      }
      r.device_ms = device_ms(ev);
      r.err = compare_output(y.data(), yt, ref);
      r.ok = r.err.nan_count == 0 && r.err.rel_mean() < r.tolerance;
    } else {
      const MoeLayer l = load_moe(ck, info.prefix, o.load);
      describe_layer(l, &r.layer);
      const MoeCheckpoint& m = l.moe;
      // The family's routing when config.json names it; else softmax over the top two.
      MoeRouting rt = l.config ? moe_routing_from_config(*l.config) : MoeRouting{};
      if (rt.top_k < 1) rt.top_k = int(std::min<int64_t>(2, m.E));
      const auto x = random_activations(T, m.H, xt, seed);
      const size_t yb = size_t(T * m.H) * dtype_size(yt);
      MoeBlock op(c, m);
      op.can_implement(T, xt, yt, x.size(), yb, rt, {});
      cl::Buffer dx = c.alloc(x.size(), CL_MEM_READ_ONLY), dy = c.alloc(yb);
      c.write(dx, x.data(), x.size());
      c.fill_u32(dy, 0xFFFFFFFFu, yb);
      OpEvents ev = op.run(dx, xt, dy, yt, T, rt);
      std::vector<uint8_t> y(yb);
      c.read(dy, y.data(), yb);
      r.device_ms = device_ms(ev);
      r.variant = std::string(rt.kind == MoeRouting::Kind::kGrouped ? "grouped" : "softmax") + " top-" +
                  std::to_string(rt.top_k) + (op.has_shared() ? ", shared experts" : "");
      // The host twin routes the device's logits, then fp64 does the rest (as `moe --check`).
      std::vector<float> logits, hw;
      std::vector<int> ids;
      op.routed().read_logits(&logits);
      moe_route_host(logits, T, m.E, rt, m.bias ? reinterpret_cast<const float*>(m.bias->data) : nullptr, &ids, &hw);
      r.err = compare_output(y.data(), yt, moe_block_reference(m, x.data(), xt, T, ids, hw, rt.top_k));
      r.tolerance = MoeProblem::kRelTolerance;
      r.ok = MoeProblem::within_tolerance(r.err);
    }
  } catch (const Error& e) {
    r.ok = false;
    r.error = std::string("[") + status_name(e.status()) + "] " + e.what();
  }
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

VerifyReport verify_checkpoint(Context& c, const std::string& path, const VerifyOptions& o) {
  if (o.tokens < 1 || o.tokens > 4096)
    fail(Status::kInvalidArgument, "tokens = " + std::to_string(o.tokens) + " must be in [1, 4096]");
  std::regex re;
  try {
    re = std::regex(o.layers.empty() ? std::string(".") : o.layers, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail(Status::kInvalidArgument, "layer pattern '" + o.layers + "' is not a regular expression: " + e.what());
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto ck = std::make_shared<const Checkpoint>(Checkpoint::open(path));
  const std::vector<LayerInfo> all = find_layers(*ck);
  std::vector<LayerInfo> chosen;
  for (const LayerInfo& l : all)
    if (o.layers.empty() || std::regex_search(l.prefix, re)) chosen.push_back(l);
  if (chosen.empty())
    fail(Status::kInvalidArgument, all.empty() ? "'" + path + "' holds no quantized linear layer or MoE block"
                                               : "no layer matches '" + o.layers + "' (" + std::to_string(all.size()) +
                                                     " layers, e.g. '" + all[0].prefix + "')");
  VerifyReport rep;
  rep.path = path;
  for (size_t i = 0; i < chosen.size(); ++i) {
    if (o.progress) o.progress(i, chosen.size(), chosen[i], nullptr);
    LayerCheck r = verify_layer(c, ck, chosen[i], o);
    if (!r.ok) ++rep.failed;
    if (r.error.empty() && (rep.worst_layer.empty() || r.err.rel_mean() > rep.worst_rel)) {
      rep.worst_rel = r.err.rel_mean();
      rep.worst_layer = r.layer.prefix;
    }
    if (r.error.empty()) rep.worst_abs = std::max(rep.worst_abs, r.err.max_abs_err);
    rep.layers.push_back(std::move(r));
    if (o.progress) o.progress(i, chosen.size(), chosen[i], &rep.layers.back());
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace clq
