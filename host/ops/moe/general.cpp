// fused_moe/general: every weight kind at any T. Routing (moe/topk.cl: router logits, then the
// softmax or grouped top-k, one work-item per token), alignment (moe/align.cl), activation
// staging in the layout each weight kind reads (w4a16/gather.cl, fp8/quant.cl: the dense ops'
// passes), the grouped expert GEMMs with the SwiGLU and the routing weight fused, their split-K
// reductions, and the combine (moe/general.cl). The routing, alignment and expert-GEMM kernels
// are the moe_routing, moe_align and moe_gemm / moe_gemm_fp8 / moe_gemm_int8 rows of the capability table.
#include <algorithm>

#include "host/caps/caps.h"
#include "host/caps/tuning.h"
#include "host/ops/moe/fused_moe.h"
#include "host/ops/moe/moe_launcher.h"
#include "host/ops/op_util.h"
#include "runtime/status.h"

namespace clq {

using oputil::dtype_code;
using oputil::i2s;
using oputil::round_up;

namespace {

std::string weight_defines(const MoeDeviceLayer& L) {
  // moe/general.cl's WEIGHT_KIND: 0 dense, 1 int4, 2 e4m3, 3 int8.
  const int kind = L.kind == MoeWeightKind::kDense  ? 0
                   : L.kind == MoeWeightKind::kInt4 ? 1
                   : L.kind == MoeWeightKind::kFp8  ? 2
                                                    : 3;
  return "-DWEIGHT_KIND=" + i2s(kind) + " -DVEC_COLS=" + i2s(L.lay1.cols) + " -DDENSE_BF16=" + (L.dense_bf16 ? "1" : "0");
}

class General final : public MoeLauncher {
 public:
  General()
      : MoeLauncher("general", {"moe/general.cl", "moe/topk.cl", "moe/align.cl", "w4a16/gather.cl", "fp8/quant.cl"}) {}

  // Every weight kind, any T, an expert map: what FusedMoe validated, this path takes.
  Check can_implement(const MoeDeviceLayer& L, const MoeCall& call, const DeviceFeatures& f) const override {
    return Check::pass();
  }

  OpEvents enqueue(Context& c, MoeDeviceLayer& L, const MoeCall& call) const override {
    OpEvents ev;  // every launch recorded (bench --breakdown)
    if (call.routing) moe_route(c, L, call, ev);
    experts(c, L, call, ev);
    return ev;
  }

 private:
  // Alignment, staging, the two grouped GEMMs (with their split-K reductions) and the combine.
  static void experts(Context& c, MoeDeviceLayer& L, const MoeCall& call, OpEvents& ev) {
    const cl::Buffer& x = *call.x;
    const cl::Buffer& y = *call.y;
    const DType xt = call.xt, yt = call.yt;
    const int64_t T = call.M;
    const int K = call.top_k;
    const MoeRunOptions& o = *call.opt;
    const MoeDeviceLayer::DispatchSize d = L.dispatch_size(T, K, o.block_size);
    const int bs = d.bs;
    const int64_t TK = d.TK, S_max = d.S_max, B_max = d.B_max;
    const int rows = std::min(bs, L.lay1.max_rows > 4 && bs >= 8 ? L.lay1.max_rows : std::min(bs, 4));
    // Scratch (allocations first: nothing below fails half-way for lack of memory).
    MoeDeviceLayer::grow(c, L.counts, L.counts_b, size_t(L.E) * 4);
    MoeDeviceLayer::grow(c, L.sorted, L.sorted_b, size_t(S_max) * 4);
    MoeDeviceLayer::grow(c, L.expert_ids, L.expert_ids_b, size_t(B_max) * 4);
    MoeDeviceLayer::grow(c, L.npp, L.npp_b, 4);
    MoeDeviceLayer::grow(c, L.map, L.map_b, size_t(L.E) * 4);
    const int64_t Kb1 = L.Kp1 / 128 > 0 ? (L.Kp1 + 127) / 128 : 1, Kb2 = (L.Kp2 + 127) / 128;
    // Act-order gate_up stages one row per routed assignment (t, j), in its expert's order.
    const int64_t R1 = L.act1 ? TK : T;
    MoeDeviceLayer::grow(c, L.xs1, L.xs1_b, size_t(R1 * std::max(L.Kp1, Kb1 * 128)) * 4);
    MoeDeviceLayer::grow(c, L.aux1, L.aux1_b, size_t(R1 * std::max(L.Kp1 / 8, Kb1)) * 4);
    MoeDeviceLayer::grow(c, L.codes1, L.codes1_b, round_up(size_t(T * L.H), 4));
    MoeDeviceLayer::grow(c, L.a, L.a_b, size_t(S_max * L.I) * 4);
    MoeDeviceLayer::grow(c, L.xs2, L.xs2_b, size_t(S_max * std::max(L.Kp2, Kb2 * 128)) * 4);
    MoeDeviceLayer::grow(c, L.aux2, L.aux2_b, size_t(S_max * std::max(L.Kp2 / 8, Kb2)) * 4);
    MoeDeviceLayer::grow(c, L.codes2, L.codes2_b, round_up(size_t(S_max * L.I), 4));
    MoeDeviceLayer::grow(c, L.y2, L.y2_b, size_t(TK * L.H) * 4);
    if (!o.expert_map.empty()) c.write(L.map, o.expert_map.data(), o.expert_map.size() * 4);

    const std::string wdef = weight_defines(L);
    const std::string gdef = wdef + " -DGEMV_M=" + i2s(rows) + " -DMOE_BS=" + i2s(bs);
    const VariantRow& al = select_variant("moe_align", c.features(), T);
    const char* gemm_op = L.kind == MoeWeightKind::kFp8    ? "moe_gemm_fp8"
                          : L.kind == MoeWeightKind::kInt8 ? "moe_gemm_int8"
                                                           : "moe_gemm";
    const VariantRow& gv = select_variant(gemm_op, c.features(), T);
    cl::Kernel align = c.kernel(row_kernel_file(al), "moe_align", "");
    const std::string gd = gdef;
    cl::Kernel g1 = c.kernel(row_kernel_file(gv), "moe_expert_gemm", gd + " -DMODE=0 -DIN_DTYPE=0 -DOUT_DTYPE=0");
    cl::Kernel g2 = c.kernel(row_kernel_file(gv), "moe_expert_gemm", gd + " -DMODE=1 -DIN_DTYPE=0 -DOUT_DTYPE=0");
    cl::Kernel comb = c.kernel(row_kernel_file(gv), "moe_combine", wdef + " -DOUT_DTYPE=" + i2s(dtype_code(yt)));
    // Staging of each GEMM's activations in the layout its weight kind reads (the dense ops' passes).
    const std::string in1 = "-DIN_DTYPE=" + i2s(dtype_code(xt)) + " -DOUT_DTYPE=0";
    cl::Kernel st1, st2;
    // ue8m0 (FP8, config.json scale_fmt): every dynamic activation scale rounded up to 2^n.
    const std::string sfmt = L.ue8m0 ? " -DSCALE_UE8M0=1" : "";
    const bool int_kind = L.kind == MoeWeightKind::kInt4 || L.kind == MoeWeightKind::kInt8;
    if (int_kind) {
      // Act-order: per-expert orders, gathered per GEMM row (moe_gather_act_order). int4 reads x
      // pre-scaled per nibble with word sums; int8 reads the plain values (as the dense ops do).
      const std::string scaled = L.kind == MoeWeightKind::kInt4 ? " -DNIBBLE_SCALED=1" : " -DNIBBLE_SCALED=0";
      st1 = L.act1 ? c.kernel("moe/general.cl", "moe_gather_act_order", gdef + " " + in1)
                   : c.kernel("w4a16/gather.cl", "w4a16_gather_x", in1 + scaled);
      st2 = L.act2 ? c.kernel("moe/general.cl", "moe_gather_act_order", gdef + " -DIN_DTYPE=0 -DOUT_DTYPE=0")
                   : c.kernel("w4a16/gather.cl", "w4a16_gather_x", "-DIN_DTYPE=0 -DOUT_DTYPE=0" + scaled);
    } else {
      const char* name = L.kind == MoeWeightKind::kFp8 ? "fp8_quant_group" : "fp8_widen_act";
      st1 = c.kernel("fp8/quant.cl", name, in1 + sfmt);
      st2 = c.kernel("fp8/quant.cl", name, "-DIN_DTYPE=0 -DOUT_DTYPE=0" + sfmt);
    }
    auto stage = [&](cl::Kernel& k, const cl::Buffer& src, int64_t M, int64_t Kdim, int64_t Kp, const cl::Buffer& perm,
                     const cl::Buffer& xs, const cl::Buffer& aux, const cl::Buffer& codes, const char* what,
                     bool act_order, int by_sorted) {
      if (act_order) {
        set_args(k, src, perm, L.ids, L.expert_ids, L.npp, xs, aux, cl_int(M), cl_int(Kdim), cl_int(Kp), cl_int(K),
                 cl_int(by_sorted));
        return launch(c, k, cl::NDRange(round_up(size_t(Kp / 8), 64), size_t(M)), cl::NDRange(64, 1), what);
      }
      if (int_kind) {
        set_args(k, src, perm, xs, aux, cl_int(M), cl_int(Kdim), cl_int(Kp));
        return launch(c, k, cl::NDRange(round_up(size_t(Kp / 8), 64), size_t(M)), cl::NDRange(64, 1), what);
      }
      const int64_t Kb = (Kdim + 127) / 128;
      // fp8_quant_group also writes the codes; fp8_widen_act has no such argument.
      if (L.kind == MoeWeightKind::kFp8)
        set_args(k, src, codes, aux, xs, cl_int(M), cl_int(Kdim), cl_int(Kb));
      else
        set_args(k, src, aux, xs, cl_int(M), cl_int(Kdim), cl_int(Kb));
      return launch(c, k, cl::NDRange(round_up(size_t(Kb), 16), size_t(M)), cl::NDRange(16, 1), what);
    };
    // Split-K: decode gives few rows, so K is split until the device has enough work-items (the
    // dense gemv's rule); each split's range is whole K units of the weight kind.
    const GemvTuning& tune = gemv_tuning(c.features());
    auto units_of = [&](int64_t Kp) {
      return L.kind == MoeWeightKind::kInt4   ? Kp / 8
             : L.kind == MoeWeightKind::kInt8 ? Kp / 4
             : L.kind == MoeWeightKind::kFp8  ? Kp / 128
                                              : Kp;
    };
    auto splits_for = [&](int64_t N_out, int64_t Kp) {
      const int64_t items = ((N_out + L.lay1.cols - 1) / L.lay1.cols) * (TK + L.E * (bs - 1) + rows - 1) / rows;
      const int64_t target = int64_t(c.features().compute_units) * tune.items_per_cu;
      // K units per split at least: 64 dense rows, 512 integer rows (64 int4 or 128 int8 words).
      const int64_t units = units_of(Kp), min_units = L.kind == MoeWeightKind::kFp8    ? 1
                                                      : L.kind == MoeWeightKind::kInt8 ? 128
                                                                                       : 64;
      return int(std::max<int64_t>(
          1, std::min<int64_t>((target + items - 1) / std::max<int64_t>(items, 1), units / min_units)));
    };
    const int splits1 = o.splits > 0 ? int(std::min<int64_t>(o.splits, units_of(L.Kp1))) : splits_for(L.I, L.Kp1);
    const int splits2 = o.splits > 0 ? int(std::min<int64_t>(o.splits, units_of(L.Kp2))) : splits_for(L.H, L.Kp2);
    MoeDeviceLayer::grow(c, L.part1, L.part1_b,
                         splits1 > 1 ? size_t(splits1) * size_t(S_max) * size_t(2 * L.I) * 4 : 4);
    MoeDeviceLayer::grow(c, L.part2, L.part2_b, splits2 > 1 ? size_t(splits2) * size_t(S_max) * size_t(L.H) * 4 : 4);
    cl::Kernel red1, red2;
    if (splits1 > 1)
      red1 = c.kernel(row_kernel_file(gv), "moe_reduce_gate_up", gd + " -DMODE=0 -DIN_DTYPE=0 -DOUT_DTYPE=0");
    if (splits2 > 1)
      red2 = c.kernel(row_kernel_file(gv), "moe_reduce_down", gd + " -DMODE=1 -DIN_DTYPE=0 -DOUT_DTYPE=0");

    auto gemm = [&](cl::Kernel& k, const cl::Buffer& w, int64_t wstride, const cl::Buffer& sc, const cl::Buffer& z,
                    int64_t gstride, const cl::Buffer& sw, int64_t swstride, const cl::Buffer& gs, const cl::Buffer& wg,
                    const cl::Buffer& xs, const cl::Buffer& aux, int by_token, const cl::Buffer& out, int64_t N_out,
                    int64_t I_off, int64_t Np, int64_t bn, int64_t Kp, int splits, const cl::Buffer& part,
                    const char* what, int row_div) {
      const int64_t units = units_of(Kp);
      const int64_t per = (units + splits - 1) / splits;
      set_args(k, w, cl_long(wstride), sc, z, cl_long(gstride), sw, cl_long(swstride), gs, wg, xs, aux,
               cl_int(by_token), L.sorted, L.expert_ids, L.npp, L.topw, out, cl_int(N_out), cl_int(I_off), cl_int(Np),
               cl_int(bn), cl_int(Kp), cl_int(row_div), cl_int(TK), cl_int(units), cl_int(per), part, cl_int(S_max));
      const size_t local = size_t(tune.gemv_local);
      return launch(c, k,
                    cl::NDRange(round_up(size_t((N_out + L.lay1.cols - 1) / L.lay1.cols), local), size_t(splits),
                                size_t(B_max * (bs / rows))),
                    cl::NDRange(local, 1, 1), what);
    };

    set_args(align, L.ids, L.map, cl_int(!o.expert_map.empty()), cl_int(TK), cl_int(L.E), cl_int(bs), L.counts,
             L.sorted, L.expert_ids, L.npp);
    ev.add(launch(c, align, cl::NDRange(256), cl::NDRange(256), "moe_align"), "moe_align");
    ev.add(stage(st1, x, R1, L.H, L.Kp1, L.perm1, L.xs1, L.aux1, L.codes1, "moe stage x", L.act1, 0), "moe stage x");
    // The gate_up kernel reads staged row id / row_div of sorted id = t*k + j: the token (row_div
    // k), or with act-order the assignment's own row (row_div 1).
    ev.add(gemm(g1, L.w1, L.w1_stride, L.sc1, L.z1, L.g1_stride, L.sw1, L.sw1_stride, L.gstart1, L.wgroup1, L.xs1,
                L.aux1, 1, L.a, L.I, L.I, L.lay1.Np, L.lay1.block_n, L.Kp1, splits1, L.part1, "moe gate_up",
                L.act1 ? 1 : K),
           "moe gate_up");
    if (splits1 > 1) {
      set_args(red1, L.part1, L.a, L.sorted, L.npp, cl_int(L.I), cl_int(S_max), cl_int(splits1), cl_int(TK));
      ev.add(launch(c, red1, cl::NDRange(round_up(size_t(L.I), 64), size_t(S_max)), cl::NDRange(64, 1),
                    "moe_reduce_gate_up"),
             "moe_reduce_gate_up");
    }
    ev.add(stage(st2, L.a, S_max, L.I, L.Kp2, L.perm2, L.xs2, L.aux2, L.codes2, "moe stage a", L.act2, 1),
           "moe stage a");
    check_cl(c.queue().enqueueFillBuffer(L.y2, cl_float(0.0f), 0, size_t(TK * L.H) * 4), "clEnqueueFillBuffer(moe y2)");
    ev.add(gemm(g2, L.w2, L.w2_stride, L.sc2, L.z2, L.g2_stride, L.sw2, L.sw2_stride, L.gstart2, L.wgroup2, L.xs2,
                L.aux2, 0, L.y2, L.H, 0, L.lay2.Np, L.lay2.block_n, L.Kp2, splits2, L.part2, "moe down", K),
           "moe down");
    if (splits2 > 1) {
      set_args(red2, L.part2, L.y2, L.sorted, L.npp, L.topw, cl_int(L.H), cl_int(S_max), cl_int(splits2), cl_int(TK));
      ev.add(
          launch(c, red2, cl::NDRange(round_up(size_t(L.H), 64), size_t(S_max)), cl::NDRange(64, 1), "moe_reduce_down"),
          "moe_reduce_down");
    }
    set_args(comb, L.y2, y, cl_int(T), cl_int(K), cl_int(L.H));
    ev.add(launch(c, comb, cl::NDRange(round_up(size_t(L.H), 64), size_t(T)), cl::NDRange(64, 1), "moe_combine"),
           "moe_combine");
  }
};

}  // namespace

void moe_route(Context& c, MoeDeviceLayer& L, const MoeCall& call, OpEvents& ev) {
  const cl::Buffer& x = *call.x;
  const DType xt = call.xt;
  const int64_t T = call.M;
  const int K = call.top_k;
  const MoeRouting& r = *call.routing;
  const std::string io = "-DIN_DTYPE=" + i2s(dtype_code(xt)) + " -DOUT_DTYPE=2";
  const VariantRow& route = select_variant("moe_routing", c.features(), T);
  cl::Kernel lk, rk;
  if (!call.logits) lk = c.kernel(row_kernel_file(route), "moe_router_logits", io + " -DWR_DTYPE=0 ");
  rk = c.kernel(row_kernel_file(route),
                r.kind == MoeRouting::Kind::kSoftmax ? "moe_topk_softmax" : "moe_topk_grouped", io);
  const cl::Buffer& lg = call.logits ? *call.logits : L.logits;
  if (!call.logits) {
    set_args(lk, x, L.router, L.logits, cl_int(T), cl_int(L.H), cl_int(L.E));
    ev.add(launch(c, lk, cl::NDRange(round_up(size_t(L.E), 16), size_t(T)), cl::NDRange(16, 1), "moe_router_logits"),
           "moe_router_logits");
  }
  if (r.kind == MoeRouting::Kind::kSoftmax) {
    set_args(rk, lg, L.ids, L.topw, cl_int(T), cl_int(L.E), cl_int(K), cl_int(r.renormalize));
  } else {
    set_args(rk, lg, L.bias, cl_int(L.has_bias), L.ids, L.topw, cl_int(T), cl_int(L.E), cl_int(K), cl_int(r.n_group),
             cl_int(r.topk_group), cl_int(r.renormalize), cl_float(r.routed_scaling), cl_int(r.softmax_scores));
  }
  ev.add(launch(c, rk, cl::NDRange(round_up(size_t(T), 64)), cl::NDRange(64), "moe_topk"), "moe_topk");
}

const MoeLauncher& moe_general_launcher() {
  static const General l;
  return l;
}

}  // namespace clq
