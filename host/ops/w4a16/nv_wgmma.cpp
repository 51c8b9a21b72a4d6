// w4a16_gemm/nv_wgmma (sm_90a through the PTX patch path): wgmma m64n128k16 with the fragment
// layout's int4 weights dequantized in registers as the A operand and 16-bit activations staged in
// 128-byte-swizzled .shared as B, on the stage hand-over of the other wgmma GEMMs (producer
// warpgroup, two consumers, mbarriers; kernels_cl/w4a16/nv_wgmma.cl). The activations go through
// w4a16_gather_h16 first unless the layer's packed order is the identity; split-K through
// w4a16_splitk_reduce when the tiles alone would leave compute units idle.
#include <algorithm>

#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"
#include "host/ops/wgmma_patch.h"

namespace clq {

namespace {

// One 64-row chunk of K: the x tile (rows x 128 bytes), 4 tiles' weights and scales per consumer
// warpgroup, in 1 KiB units.
size_t stage_bytes(int tok, int cwg) { return tok == 256 ? 37888 : cwg == 3 ? 23552 : 21504; }

// Sweep knobs, read once: CLQ_NV_W4WGMMA=stages=S (2..10, default 8),group=G (row tiles of x that
// share each column tile, default 8),prescale=0|1 (fp16: scales in the A registers where the layer
// allows, default 1),defer=0|1 (keep a chunk's wgmma in flight while the next is built, default 1),
// tok=128|256 (rows of x per tile with prescale, default 128; 256 is m64n256 with setmaxnreg, which
// passed the suite on the H200 but measured 1.2x slower, bench/RESULTS.md), cwg=2|3 (consumer
// warpgroups of 64 columns each; 3 with prescale only, on setmaxnreg; default: chosen by waves).
// stages=0 takes the default per tile: 6 at 128 rows, 5 at 256.
struct Knobs {
  int stages, group, prescale, defer, tok, cwg;
};
const Knobs& knobs() {
  static const Knobs k{oputil::env_knob("CLQ_NV_W4WGMMA", "stages", 0),
                       std::clamp(oputil::env_knob("CLQ_NV_W4WGMMA", "group", 8), 1, 64),
                       oputil::env_knob("CLQ_NV_W4WGMMA", "prescale", 1) != 0,
                       oputil::env_knob("CLQ_NV_W4WGMMA", "defer", 1) != 0,
                       oputil::env_knob("CLQ_NV_W4WGMMA", "tok", 128) == 256 ? 256 : 128,
                       std::clamp(oputil::env_knob("CLQ_NV_W4WGMMA", "cwg", 0), 0, 3)};
  return k;
}

// Three consumer warpgroups (192-column tiles) do 1.5x the work of two in 1.31x the time
// (H200, 28672x8192 M=4096: 3.42 against 3.91 ms), one work-group per SM either way (the stages
// fill the shared memory). Whichever takes fewer of its waves, each wave as long as its tile,
// wins: three at prefill sizes, two where 192-column tiles would leave the last wave, or the
// only one, thin (8192 columns at M <= 256, 28672 at M = 128; bench/RESULTS.md).
int consumers_by_waves(int64_t N, int64_t M, int64_t cus) {
  const int64_t m_tiles = (M + 127) / 128, cu = std::max<int64_t>(cus, 1);
  const double w2 = double((((N + 127) / 128) * m_tiles + cu - 1) / cu);
  const double w3 = double((((N + 191) / 192) * m_tiles + cu - 1) / cu) * 1.31;
  return w3 < w2 ? 3 : 2;
}

class NvWgmma final : public W4A16Launcher {
 public:
  NvWgmma() : W4A16Launcher("nv_wgmma", {"w4a16/nv_wgmma.cl", "w4a16/gather.cl", "w4a16/gemv.cl"}) {}

  Check can_implement(const W4A16DeviceLayer& L, const W4A16Call& a, const DeviceFeatures& f) const override {
    if (!L.has_fragment_layout() || L.bits != 4)
      return Check::refuse(Status::kNotSupported, "nv_wgmma needs the int4 fragment layout, which is uploaded only "
                                                  "where the mma.sync f16 probe passed");
    if (double(a.M) * double(L.chunks * 64 * 2) >= 2147483647.0)
      return Check::refuse(Status::kInvalidShape, "nv_wgmma addresses activation rows with 32-bit offsets: M = " +
                                                      std::to_string(a.M) + " x " + std::to_string(L.chunks * 128) +
                                                      " bytes a row must stay below 2^31");
    return Check::pass();
  }

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    const int64_t M = a.M;
    const bool bf16 = a.xt == DType::kBF16;
    const Knobs& kn = knobs();
    // bf16 keeps the fold per chunk: rounding (q - z) * s to bf16 alone would cost about 1e-3.
    const bool prescale = !bf16 && L.scales_fp16_safe && kn.prescale;
    const int tok = prescale ? kn.tok : 128;  // the fold build's block sums leave no room for 256
    const int cwg = prescale && tok == 128 ? (kn.cwg >= 2 ? kn.cwg : consumers_by_waves(L.N, M, c.features().compute_units)) : 2;
    const int64_t tile_n = 64 * cwg, threads = 128 * (cwg + 1);
    const int64_t max_stages = int64_t((kMaxWgmmaSmem - 1024) / stage_bytes(tok, cwg));
    const int stages = int(std::clamp<int64_t>(kn.stages > 0 ? kn.stages : tok == 256 ? 5 : 6, 2, max_stages));
    const int64_t n_tiles = (L.N + tile_n - 1) / tile_n, m_tiles = (M + tok - 1) / tok;
    int64_t splits = a.opt.splits;
    if (splits <= 0) {
      // Split K only while the tiles leave compute units idle, keeping at least 16 chunks per range.
      const int64_t cu = c.features().compute_units, tiles = n_tiles * m_tiles;
      splits = std::max<int64_t>(1, std::min<int64_t>(cu / std::max<int64_t>(tiles, 1), L.chunks / 16));
    }
    splits = std::clamp<int64_t>(splits, 1, L.chunks);
    const int64_t cps = (L.chunks + splits - 1) / splits;
    splits = (L.chunks + cps - 1) / cps;  // no empty range
    const int64_t ld = L.chunks * 64;
    // fp32 activations go through the gather too, which rounds them to fp16 (as nv_mma_tiled).
    const bool direct = L.identity_perm && ld == L.K && (a.xt == DType::kF16 || a.xt == DType::kBF16);
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    // Every kernel is built, and every buffer allocated, before anything is enqueued.
    cl::Kernel main_k = c.kernel_patched(
        "w4a16/nv_wgmma.cl", "w4a16_gemm_nv_wgmma",
        defs + " -DMMA_BF16=" + (bf16 ? "1" : "0") + " -DSTAGES=" + std::to_string(stages) + " -DTOK=" + std::to_string(tok) +
            " -DCWG=" + std::to_string(cwg) +
            " -DGROUP_M=" + std::to_string(kn.group) + " -DPRESCALE=" + (prescale ? "1" : "0") +
            " -DDEFER=" + std::to_string(kn.defer) + " -DTURN=2",
        wgmma_patch(size_t(stages) * stage_bytes(tok, cwg) + 1024, bf16 ? WgmmaOperands::kBf16Rs : WgmmaOperands::kF16Rs));
    cl::Kernel gather, reduce;
    if (!direct)
      gather = c.kernel("w4a16/gather.cl", "w4a16_gather_h16", defs + " -DHALF_BF16=" + std::string(bf16 ? "1" : "0"));
    if (splits > 1) reduce = c.kernel("w4a16/gemv.cl", "w4a16_splitk_reduce", defs);
    if (!direct) oputil::grow_scratch(c, L.xp, L.xp_bytes, size_t(M) * size_t(ld) * 2);
    oputil::grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    OpEvents ev;
    if (!direct) {
      set_args(gather, *a.x, L.perm, L.xp, cl_int(M), cl_int(L.K), cl_int(L.Kp), cl_int(ld));
      oputil::enqueue(c, ev, gather, cl::NDRange(oputil::round_up(size_t(ld / 8), 64), size_t(M)), cl::NDRange(64, 1),
                      "w4a16_gather_h16");
    }
    set_args(main_k, L.qf, L.sz, L.wgroupf, L.descf, direct ? *a.x : L.xp, L.part, *a.y, cl_int(M), cl_int(L.N),
             cl_int(L.tiles), cl_int(L.chunks), cl_int(ld * 2), cl_int(cps));
    const std::string what = "w4a16_gemm_nv_wgmma (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) +
                             ", stages=" + std::to_string(stages) + ", " + std::to_string(tok) + "x" +
                             std::to_string(tile_n) + " tiles" +
                             (prescale ? ", fp16 A" : ", fold") + ")";
    // cwg consumer warpgroups and the producer per output tile.
    oputil::enqueue(c, ev, main_k, cl::NDRange(size_t(n_tiles * threads), size_t(splits), size_t(m_tiles)),
                    cl::NDRange(size_t(threads), 1, 1), what);
    if (splits > 1) oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, int(splits), "w4a16_splitk_reduce");
    return ev;
  }
};

}  // namespace

const W4A16Launcher& w4a16_nv_wgmma_launcher() {
  static const NvWgmma l;
  return l;
}

}  // namespace clq
