// fused_moe/decode: few tokens (T * top_k <= the row's max_m), four launches and no host
// round trip (kernels_cl/moe/decode.cl): router logits with the FP8 activation staging, top-k
// with the alignment in one work-group (moe/topk.cl; the alignment alone when the caller gave
// the routing, moe/align.cl), gate_up with the SwiGLU, down with the routing weight and the
// combine. Each GEMM reads an expert's weights once per aligned block and finishes its own
// split-K sum and the combine (the last work-group of a tile adds the partials in split order).
#include <algorithm>

#include "host/caps/caps.h"
#include "host/ops/moe/fused_moe.h"
#include "host/ops/moe/moe_launcher.h"
#include "host/ops/op_util.h"
#include "runtime/status.h"

namespace clq {

using oputil::dtype_code;
using oputil::i2s;

namespace {

class Decode final : public MoeLauncher {
 public:
  Decode() : MoeLauncher("decode", {"moe/decode.cl", "moe/topk.cl", "moe/align.cl"}) {}

  Check can_implement(const MoeDeviceLayer& L, const MoeCall& call, const DeviceFeatures& f) const override {
    const MoeRunOptions& o = *call.opt;
    const int64_t slots = call.M * call.top_k;
    std::string why;
    // Integer experts have no decode kernel (moe/decode.cl reads fp16/bf16 and e4m3): the
    // dispatcher sends them to the general path, which reads every kind.
    if (L.kind == MoeWeightKind::kInt4)
      why = "int4 experts";
    else if (L.kind == MoeWeightKind::kInt8)
      why = "int8 experts";
    else if (!o.expert_map.empty())
      why = "an expert_map (skipped slots never reach the combine)";
    else if (L.E > 1024)
      why = "E = " + i2s(L.E) + " > 1024 (moe_topk_align keeps a token's scores in local memory)";
    else if (slots > max_slots())
      why = "T * top_k = " + i2s(slots) + " > " + i2s(max_slots());
    else if (L.H % 4 != 0 || L.I % 4 != 0)
      why = "H = " + i2s(L.H) + ", I = " + i2s(L.I) + " (both must be multiples of 4)";
    else if (L.kind == MoeWeightKind::kFp8 && L.I % 128 != 0)
      why = "FP8 experts with I = " + i2s(L.I) + " % 128 != 0";
    else if (o.block_size > 16)
      why = "block_size = " + i2s(o.block_size) + " > 16";
    if (!why.empty()) return Check::refuse(Status::kInvalidArgument, "the MoE decode path does not apply: " + why);
    return Check::pass();
  }

  OpEvents enqueue(Context& c, MoeDeviceLayer& L, const MoeCall& call) const override {
    const int64_t T = call.M;
    const int K = call.top_k;
    const MoeRunOptions& o = *call.opt;
    const MoeRouting* r = call.routing;  // nullptr: the caller's ids, the alignment alone runs
    const cl::Buffer* logits = call.logits;
    const bool fp8 = L.kind == MoeWeightKind::kFp8;
    const MoeDeviceLayer::DispatchSize d = L.dispatch_size(T, K, o.block_size);
    const int bs = d.bs;
    const int64_t TK = d.TK, S_max = d.S_max, B_max = d.B_max;
    const int64_t Kb1 = (L.H + 127) / 128;
    const int64_t tiles1 = (L.I + 127) / 128, tiles2 = (L.H + 255) / 256;
    // K units: FP8 128-row blocks; dense quads of 4 rows.
    const int64_t units1 = fp8 ? L.Kp1 / 128 : L.H / 4, units2 = fp8 ? L.Kp2 / 128 : L.I / 4;
    const int64_t blocks = std::min<int64_t>(B_max, TK);
    int splits1 = decode_splits(c.features(), tiles1, blocks, units1, fp8 ? 1 : 32, o.splits);
    int splits2 = decode_splits(c.features(), tiles2, blocks, units2, fp8 ? 1 : 32, o.splits);
    const int64_t per1 = (units1 + splits1 - 1) / splits1, per2 = (units2 + splits2 - 1) / splits2;
    splits1 = int((units1 + per1 - 1) / per1);
    splits2 = int((units2 + per2 - 1) / per2);
    // Scratch (allocations first: nothing below fails half-way for lack of memory).
    MoeDeviceLayer::grow(c, L.counts, L.counts_b, size_t(L.E) * 4);
    MoeDeviceLayer::grow(c, L.sorted, L.sorted_b, size_t(S_max) * 4);
    MoeDeviceLayer::grow(c, L.expert_ids, L.expert_ids_b, size_t(B_max) * 4);
    MoeDeviceLayer::grow(c, L.npp, L.npp_b, 4);
    MoeDeviceLayer::grow(c, L.map, L.map_b, size_t(L.E) * 4);
    // FP8: x as e4m3 values, its scales, the scales of a (dense: unused, but real buffers).
    MoeDeviceLayer::grow(c, L.xs1, L.xs1_b, fp8 ? size_t(T * Kb1 * 128) * 4 : 4);
    MoeDeviceLayer::grow(c, L.aux1, L.aux1_b, fp8 ? size_t(T * Kb1) * 4 : 4);
    MoeDeviceLayer::grow(c, L.aux2, L.aux2_b, fp8 ? size_t(S_max * (L.I / 128)) * 4 : 4);
    MoeDeviceLayer::grow(c, L.a, L.a_b, size_t(S_max * L.I) * 4);
    MoeDeviceLayer::grow(c, L.y2, L.y2_b, size_t(TK * L.H) * 4);
    MoeDeviceLayer::grow(c, L.part1, L.part1_b,
                         splits1 > 1 ? size_t(splits1) * size_t(S_max) * size_t(2 * L.I) * 4 : 4);
    MoeDeviceLayer::grow(c, L.part2, L.part2_b, splits2 > 1 ? size_t(splits2) * size_t(S_max) * size_t(L.H) * 4 : 4);
    // The counters return to zero at the end of every call (the last group resets its own), so
    // only a new buffer needs clearing.
    auto counters = [&](cl::Buffer& b, size_t& have, size_t need) {
      if (oputil::grow_scratch(c, b, have, std::max<size_t>(need, 4))) c.fill_u32(b, 0u, have);
    };
    counters(L.cnt1, L.cnt1_b, size_t(B_max * tiles1) * 4);
    counters(L.cnt2, L.cnt2_b, size_t(B_max * tiles2) * 4);
    counters(L.tokcnt, L.tokcnt_b, size_t(T * tiles2) * 4);

    const std::string in = "-DIN_DTYPE=" + i2s(dtype_code(call.xt)) + (fp8 && L.ue8m0 ? " -DSCALE_UE8M0=1" : "");
    const std::string wdef =
        "-DWEIGHT_KIND=" + i2s(fp8 ? 2 : 0) + " -DDENSE_BF16=" + (L.dense_bf16 ? "1" : "0") + " -DMOE_BS=" + i2s(bs) +
        (fp8 ? oputil::fp8_decode_define(c.features()) : std::string());
    const VariantRow& route = select_variant("moe_routing", c.features(), T);
    OpEvents ev;  // every launch recorded (bench --breakdown)
    auto mark = [&](const cl::Event& e, const char* name) { ev.add(e, name); };
    // 1. Router logits and FP8 staging in one launch.
    const bool logit_groups = r && !logits;
    if (logit_groups || fp8) {
      cl::Kernel k = c.kernel("moe/decode.cl", "moe_route_stage", in);
      const int64_t nl = logit_groups ? L.E : 0, nq = fp8 ? Kb1 : 0;
      set_args(k, *call.x, L.router, L.logits, cl_int(nl), L.xs1, L.aux1, cl_int(T), cl_int(L.H), cl_int(L.E),
               cl_int(Kb1));
      mark(launch(c, k, cl::NDRange(size_t(nl + nq) * 64, size_t(T)), cl::NDRange(64, 1), "moe_route_stage"),
           "moe_route_stage");
    }
    // 2. Top-k and alignment (one work-group), or the alignment of host-given ids.
    if (r) {
      const cl::Buffer& lg = logits ? *logits : L.logits;
      cl::Kernel k = c.kernel(row_kernel_file(route), "moe_topk_align", "-DIN_DTYPE=0");
      const bool grouped = r->kind == MoeRouting::Kind::kGrouped;
      set_args(k, lg, cl_int(grouped), L.bias, cl_int(L.has_bias), L.ids, L.topw, cl_int(T), cl_int(L.E), cl_int(K),
               cl_int(r->n_group), cl_int(r->topk_group), cl_int(r->renormalize), cl_float(r->routed_scaling),
               cl_int(r->softmax_scores), cl_int(bs), L.counts, L.sorted, L.expert_ids, L.npp);
      mark(launch(c, k, cl::NDRange(256), cl::NDRange(256), "moe_topk_align"), "moe_topk_align");
    } else {
      const VariantRow& al = select_variant("moe_align", c.features(), T);
      cl::Kernel k = c.kernel(row_kernel_file(al), "moe_align", "");
      set_args(k, L.ids, L.map, cl_int(0), cl_int(TK), cl_int(L.E), cl_int(bs), L.counts, L.sorted, L.expert_ids,
               L.npp);
      mark(launch(c, k, cl::NDRange(256), cl::NDRange(256), "moe_align"), "moe_align");
    }
    // 3. gate_up with the SwiGLU (FP8: and the down GEMM's activation quantization).
    cl::Kernel g1 =
        c.kernel("moe/decode.cl", "moe_decode_gate_up", in + std::string(" -DX_IN=") + (fp8 ? "0 " : "1 ") + wdef);
    set_args(g1, L.w1, cl_long(L.w1_stride), L.sw1, cl_long(L.sw1_stride), fp8 ? L.xs1 : *call.x, L.aux1, L.sorted,
             L.expert_ids, L.npp, L.a, L.aux2, cl_int(L.I), cl_int(fp8 ? Kb1 * 128 : L.H), cl_int(L.lay1.block_n),
             cl_int(L.Kp1), cl_int(K), cl_int(TK), cl_int(units1), cl_int(per1), L.part1, L.cnt1, cl_int(S_max));
    mark(launch(c, g1, cl::NDRange(size_t(tiles1) * 256, size_t(splits1), size_t(B_max)), cl::NDRange(256, 1, 1),
                "moe_decode_gate_up"),
         "moe_decode_gate_up");
    // 4. down with the routing weight and the combine.
    cl::Kernel g2 = c.kernel("moe/decode.cl", "moe_decode_down",
                             "-DIN_DTYPE=0 -DX_IN=0 -DOUT_DTYPE=" + i2s(dtype_code(call.yt)) + " " + wdef);
    set_args(g2, L.w2, cl_long(L.w2_stride), L.sw2, cl_long(L.sw2_stride), L.a, L.aux2, L.sorted, L.expert_ids, L.npp,
             L.topw, L.y2, *call.y, cl_int(L.H), cl_int(L.I), cl_int(L.lay2.block_n), cl_int(L.Kp2), cl_int(K),
             cl_int(TK), cl_int(units2), cl_int(per2), L.part2, L.cnt2, L.tokcnt, cl_int(S_max));
    mark(launch(c, g2, cl::NDRange(size_t(tiles2) * 256, size_t(splits2), size_t(B_max)), cl::NDRange(256, 1, 1),
                "moe_decode_down"),
         "moe_decode_down");
    return ev;
  }

 private:
  // The largest T * top_k the path takes: the fused_moe/decode row's max_m (host/caps/caps.cpp).
  static int64_t max_slots() {
    static const int64_t m = [] {
      for (auto& r : capability_table())
        if (std::string(r.op) == "fused_moe" && std::string(r.variant) == "decode") return r.max_m;
      fail(Status::kInternal, "capability table has no fused_moe/decode row");
    }();
    return m;
  }

  // Split-K ranges of one decode GEMM: enough work-groups for every compute unit to hold several
  // (the decode GEMMs are a stream), whole K units of at least min_units each.
  static int decode_splits(const DeviceFeatures& f, int64_t tiles, int64_t blocks, int64_t units, int64_t min_units,
                           int forced) {
    if (forced > 0) return int(std::min<int64_t>(forced, units));
    const int64_t target = int64_t(f.compute_units) * 8;
    const int64_t groups = std::max<int64_t>(1, tiles * blocks);
    return int(std::max<int64_t>(1, std::min<int64_t>((target + groups - 1) / groups, units / min_units)));
  }
};

}  // namespace

const MoeLauncher& moe_decode_launcher() {
  static const Decode l;
  return l;
}

}  // namespace clq
