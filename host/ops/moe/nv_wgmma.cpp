// fused_moe/nv_wgmma (sm_90a through the PTX patch path): prefill with fp16/bf16 experts. The
// general path's routing (moe/topk.cl) and alignment (moe/align.cl, blocks of 128 slots), then
// both grouped GEMMs on register-A wgmma (kernels_cl/moe/nv_wgmma.cl): gate_up with the SwiGLU
// in registers, writing a as 16-bit hi + lo; down with the routing weight; then moe_combine
// (moe/general.cl). The activations are read as they are where their rows are whole 64-column
// chunks, else padded once (moe_wg_pad_rows).
#include <algorithm>

#include "host/caps/caps.h"
#include "host/ops/moe/fused_moe.h"
#include "host/ops/moe/moe_launcher.h"
#include "host/ops/op_util.h"
#include "host/ops/wgmma_patch.h"
#include "runtime/status.h"

namespace clq {

using oputil::dtype_code;
using oputil::i2s;
using oputil::round_up;

namespace {

constexpr int kBlock = 128;  // slots per aligned block: the N of the m64n128 wgmma

// Sweep knobs, read once: CLQ_NV_MOEWGMMA=stages1=S,stages2=S (gate_up 2..6, down 2..4; default
// the most that fit), group=G (blocks that walk the column tiles together, default 8), ko=1|2
// (knock-out builds for measurement: no wgmma, or no copies; wrong results).
struct Knobs {
  int stages1, stages2, group, ko;
};
const Knobs& knobs() {
  static const Knobs k{std::clamp(oputil::env_knob("CLQ_NV_MOEWGMMA", "stages1", 6), 2, 6),
                       std::clamp(oputil::env_knob("CLQ_NV_MOEWGMMA", "stages2", 4), 2, 4),
                       std::clamp(oputil::env_knob("CLQ_NV_MOEWGMMA", "group", 8), 1, 64),
                       std::clamp(oputil::env_knob("CLQ_NV_MOEWGMMA", "ko", 0), 0, 2)};
  return k;
}

// Bytes of one pipeline stage: 128 activation rows of 128 bytes (gate_up), or two (a's hi and
// lo, down), and 8 warp tiles of 2 KiB of weights.
size_t stage_bytes(int mode) { return size_t(mode == 0 ? 1 : 2) * kBlock * 128 + 8 * 2048; }

class NvWgmma final : public MoeLauncher {
 public:
  NvWgmma() : MoeLauncher("nv_wgmma", {"moe/nv_wgmma.cl", "moe/topk.cl", "moe/align.cl", "moe/general.cl"}) {}

  Check can_implement(const MoeDeviceLayer& L, const MoeCall& call, const DeviceFeatures& f) const override {
    const MoeRunOptions& o = *call.opt;
    std::string why;
    const DType wt = L.dense_bf16 ? DType::kBF16 : DType::kF16;
    if (!f.nv_wgmma)
      why = "the device did not pass the nv_wgmma probe";
    else if (L.kind != MoeWeightKind::kDense)
      why = std::string(moe_kind_name(L.kind)) + " experts (fp16/bf16 experts only)";
    else if (call.x && call.xt != wt)
      // The wgmma operands are the experts' 16-bit type; converting x would round it once more.
      why = std::string("activations of dtype ") + dtype_name(call.xt) + " with " + dtype_name(wt) +
            " experts (they must match)";
    else if (L.H % 8 != 0 || L.I % 8 != 0)
      why = "H = " + i2s(L.H) + ", I = " + i2s(L.I) + " (both must be multiples of 8: 16-byte weight pieces)";
    else if (L.lay1.block_n != L.lay1.Np || L.lay2.block_n != L.lay2.Np)
      why = "weights in column blocks (the CPU tuning row's layout)";
    else if (o.block_size > 0 && o.block_size != kBlock)
      why = "block_size = " + i2s(o.block_size) + " (this path aligns to blocks of " + i2s(kBlock) + ")";
    else if (double(call.M) * double(L.Kp1) * 2 >= 2147483647.0 ||
             (double(call.M) * call.top_k + double(L.E) * kBlock) * double(L.Kp2) * 2 >= 2147483647.0)
      why = "T = " + i2s(call.M) + ": activation rows are addressed with 32-bit offsets";
    if (!why.empty()) return Check::refuse(Status::kInvalidArgument, "the MoE nv_wgmma path does not apply: " + why);
    return Check::pass();
  }

  OpEvents enqueue(Context& c, MoeDeviceLayer& L, const MoeCall& call) const override {
    const int64_t T = call.M;
    const int K = call.top_k;
    const MoeRunOptions& o = *call.opt;
    const Knobs& kn = knobs();
    const MoeDeviceLayer::DispatchSize d = L.dispatch_size(T, K, kBlock);
    const int64_t TK = d.TK, S_max = d.S_max, B_max = d.B_max;
    const bool direct = L.H == L.Kp1;  // rows of x are already whole chunks
    const std::string wdef = " -DMMA_BF16=" + std::string(L.dense_bf16 ? "1" : "0") + " -DGROUP_M=" + i2s(kn.group) + " -DKO=" + i2s(kn.ko);
    const WgmmaOperands ops = L.dense_bf16 ? WgmmaOperands::kBf16Rs : WgmmaOperands::kF16Rs;
    // Every kernel is built, and every buffer allocated, before anything is enqueued.
    const VariantRow& al = select_variant("moe_align", c.features(), T);
    cl::Kernel align = c.kernel(row_kernel_file(al), "moe_align", "");
    const std::string opt1 = "-DMODE=0 -DSTAGES=" + i2s(kn.stages1) + wdef;
    const PtxPatch patch1 = wgmma_patch(size_t(kn.stages1) * stage_bytes(0) + 1024, ops);
    cl::Kernel g1 = c.kernel_patched("moe/nv_wgmma.cl", "moe_gemm_nv_wgmma", opt1, patch1);
    cl::Kernel g2 = c.kernel_patched("moe/nv_wgmma.cl", "moe_gemm_nv_wgmma",
                                     "-DMODE=1 -DSTAGES=" + i2s(kn.stages2) + wdef,
                                     wgmma_patch(size_t(kn.stages2) * stage_bytes(1) + 1024, ops));
    cl::Kernel pad;
    if (!direct) pad = c.kernel_patched("moe/nv_wgmma.cl", "moe_wg_pad_rows", opt1, patch1);  // g1's program
    // The general path's combine, built with its options (one program for both paths).
    cl::Kernel comb = c.kernel("moe/general.cl", "moe_combine",
                               "-DWEIGHT_KIND=0 -DVEC_COLS=" + i2s(L.lay1.cols) + " -DDENSE_BF16=" +
                                   (L.dense_bf16 ? "1" : "0") + " -DOUT_DTYPE=" + i2s(dtype_code(call.yt)));
    MoeDeviceLayer::grow(c, L.counts, L.counts_b, size_t(L.E) * 4);
    MoeDeviceLayer::grow(c, L.sorted, L.sorted_b, size_t(S_max) * 4);
    MoeDeviceLayer::grow(c, L.expert_ids, L.expert_ids_b, size_t(B_max) * 4);
    MoeDeviceLayer::grow(c, L.npp, L.npp_b, 4);
    MoeDeviceLayer::grow(c, L.map, L.map_b, size_t(L.E) * 4);
    if (!direct) MoeDeviceLayer::grow(c, L.xs1, L.xs1_b, size_t(T * L.Kp1) * 2);
    MoeDeviceLayer::grow(c, L.a_hi, L.a_hi_b, size_t(S_max * L.Kp2) * 2);
    MoeDeviceLayer::grow(c, L.a_lo, L.a_lo_b, size_t(S_max * L.Kp2) * 2);
    MoeDeviceLayer::grow(c, L.y2, L.y2_b, size_t(TK * L.H) * 4);
    if (!o.expert_map.empty()) c.write(L.map, o.expert_map.data(), o.expert_map.size() * 4);

    OpEvents ev;
    if (call.routing) moe_route(c, L, call, ev);
    set_args(align, L.ids, L.map, cl_int(!o.expert_map.empty()), cl_int(TK), cl_int(L.E), cl_int(kBlock), L.counts,
             L.sorted, L.expert_ids, L.npp);
    oputil::enqueue(c, ev, align, cl::NDRange(256), cl::NDRange(256), "moe_align");
    if (!direct) {
      set_args(pad, *call.x, L.xs1, cl_int(T), cl_int(L.H), cl_int(L.Kp1));
      oputil::enqueue(c, ev, pad, cl::NDRange(round_up(size_t(L.Kp1 / 8), 64), size_t(T)), cl::NDRange(64, 1),
                      "moe_wg_pad_rows");
    }
    // A slot of a non-local expert is never written by the down GEMM: the combine reads 0 there.
    if (!o.expert_map.empty())
      check_cl(c.queue().enqueueFillBuffer(L.y2, cl_float(0.0f), 0, size_t(TK * L.H) * 4), "clEnqueueFillBuffer(moe y2)");
    const size_t threads = 384;  // two consumer warpgroups and the producer
    const int64_t tiles1 = L.Kp2 / 64, tiles2 = (L.H + 127) / 128;
    const int chunks1 = int(L.Kp1 / 64), chunks2 = int(L.Kp2 / 64);
    const cl::Buffer& xin = direct ? *call.x : L.xs1;
    set_args(g1, L.w1, cl_long(L.w1_stride), cl_int(L.lay1.Np), xin, xin, cl_int(L.Kp1 * 2), L.sorted, L.expert_ids,
             L.npp, L.topw, L.a_hi, L.a_lo, cl_int(L.Kp2), L.y2, cl_int(L.I), cl_int(chunks1), cl_int(K), cl_int(TK));
    oputil::enqueue(c, ev, g1, cl::NDRange(size_t(tiles1) * threads, 1, size_t(B_max)), cl::NDRange(threads, 1, 1),
                    "moe gate_up (nv_wgmma, " + i2s(B_max) + " blocks at most)");
    set_args(g2, L.w2, cl_long(L.w2_stride), cl_int(L.lay2.Np), L.a_hi, L.a_lo, cl_int(L.Kp2 * 2), L.sorted,
             L.expert_ids, L.npp, L.topw, L.a_hi, L.a_lo, cl_int(L.Kp2), L.y2, cl_int(L.H), cl_int(chunks2), cl_int(K),
             cl_int(TK));
    oputil::enqueue(c, ev, g2, cl::NDRange(size_t(tiles2) * threads, 1, size_t(B_max)), cl::NDRange(threads, 1, 1),
                    "moe down (nv_wgmma)");
    set_args(comb, L.y2, *call.y, cl_int(T), cl_int(K), cl_int(L.H));
    oputil::enqueue(c, ev, comb, cl::NDRange(round_up(size_t(L.H), 64), size_t(T)), cl::NDRange(64, 1), "moe_combine");
    return ev;
  }
};

}  // namespace

const MoeLauncher& moe_nv_wgmma_launcher() {
  static const NvWgmma l;
  return l;
}

}  // namespace clq
