// fp8_block_gemm / fp8_tensor_gemm "nv_wgmma_e4m3" (sm_90a through the PTX patch path):
// wgmma m64n128k32 e4m3 from shared-memory descriptors over STAGES x 32 KiB stages, a producer
// warpgroup and two consumers handing stages over through mbarriers
// (kernels_cl/fp8/nv_wgmma_e4m3.cl). Reads the weight codes row by row, K contiguous, so the
// first call lays out that copy once from the column-block words (fp8_rows_from_blocks) and the
// layer keeps it; asks the quantizer for padded e4m3 codes; split-K through fp8_splitk_reduce
// when the output tiles alone would leave compute units idle.
#include <algorithm>

#include "host/ops/fp8/fp8_launcher.h"
#include "host/ops/op_util.h"
#include "host/ops/wgmma_patch.h"

namespace clq {

namespace {

constexpr int64_t kTile = 128;         // output rows and columns per work-group
constexpr size_t kStageBytes = 32768;  // one 128-wide K block of A and B

// Sweep knobs, read once: CLQ_NV_WGMMA=stages=S (2..7, default 6),group=G (row tiles that share
// column tiles, default 8),swizzle=0|128 (stage layout, default 128),ko=1|2 (knock-out builds, for
// measurement only, wrong results: 1 issues no wgmma, 2 loads only the first STAGES blocks, 3 no
// proxy fence, 4 no fold, 5 neither loads nor fold, 6 wgmma alone).
struct WgmmaKnobs {
  int stages, group, swizzle, knockout;
};
const WgmmaKnobs& wgmma_knobs() {
  static const WgmmaKnobs k{std::clamp(oputil::env_knob("CLQ_NV_WGMMA", "stages", 6), 2, 7),
                            std::clamp(oputil::env_knob("CLQ_NV_WGMMA", "group", 8), 1, 64),
                            oputil::env_knob("CLQ_NV_WGMMA", "swizzle", 128) == 0 ? 0 : 128,
                            std::clamp(oputil::env_knob("CLQ_NV_WGMMA", "ko", 0), 0, 6)};
  return k;
}

class NvWgmmaE4m3 final : public Fp8Launcher {
 public:
  NvWgmmaE4m3() : Fp8Launcher("nv_wgmma_e4m3", {"fp8/nv_wgmma_e4m3.cl", "fp8/quant.cl", "fp8/gemv.cl"}) {}

  Check can_implement(const Fp8DeviceLayer& L, const Fp8Call& a, const DeviceFeatures& f) const override {
    if (a.act == Fp8Act::kNone)
      return Check::refuse(Status::kNotSupported,
                           "nv_wgmma_e4m3 multiplies e4m3 codes: it needs quantized activations, not weight-only (w8a16)");
    const size_t rows_bytes = size_t(oputil::round_up(size_t(L.N), kTile)) * size_t(L.Kp);
    if (rows_bytes > f.max_alloc)
      return Check::refuse(Status::kInvalidShape, "nv_wgmma_e4m3 keeps a row-major copy of the weights (" +
                                                      std::to_string(rows_bytes) + " bytes), above the device's max allocation");
    return Check::pass();
  }

  OpEvents enqueue(Context& c, Fp8DeviceLayer& L, Fp8Quantizer& quant, const Fp8Call& a) const override {
    const int64_t M = a.M;
    const int64_t n_tiles = (L.N + kTile - 1) / kTile, m_tiles = (M + kTile - 1) / kTile;
    // Split K only while the tiles leave compute units idle, keeping at least 8 blocks per range.
    int splits = a.splits;
    if (splits <= 0) {
      const int64_t cu = c.features().compute_units, tiles = n_tiles * m_tiles;
      splits = int(std::max<int64_t>(1, std::min<int64_t>(cu / std::max<int64_t>(tiles, 1), L.Kb / 8)));
    }
    splits = fp8_whole_splits(L, splits);
    const int64_t bps = (L.Kb + splits - 1) / splits;
    const WgmmaKnobs& kn = wgmma_knobs();
    const int stages = kn.stages;
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    // Every kernel is built before anything is enqueued.
    cl::Kernel main_k = c.kernel_patched(
        "fp8/nv_wgmma_e4m3.cl", "fp8_block_gemm_wgmma",
        defs + " -DSTAGES=" + std::to_string(stages) + " -DGROUP_M=" + std::to_string(kn.group) +
            " -DCLQ_WG_SWIZZLE=" + std::to_string(kn.swizzle) + " -DKNOCKOUT=" + std::to_string(kn.knockout),
        wgmma_patch(size_t(stages) * kStageBytes + 1024));  // + the stages' mbarriers
    cl::Kernel rows_k;
    if (!L.have_rows) rows_k = c.kernel("fp8/gemv.cl", "fp8_rows_from_blocks", defs);
    cl::Kernel reduce;
    if (splits > 1) reduce = c.kernel("fp8/gemv.cl", "fp8_splitk_reduce", defs);
    oputil::grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    OpEvents ev;
    const int64_t Npw = n_tiles * kTile;
    if (!L.have_rows) {
      L.rows = c.alloc(size_t(Npw) * size_t(L.Kp), CL_MEM_READ_WRITE);
      set_args(rows_k, L.qw, L.rows, cl_int(L.N), cl_int(Npw), cl_int(L.g.block_n), cl_int(L.Kp));
      oputil::enqueue(c, ev, rows_k, cl::NDRange(oputil::round_up(size_t(L.Kp / 4), 64), size_t(Npw)),
                      cl::NDRange(64, 1), "fp8_rows_from_blocks (once per layer)");
      L.have_rows = true;
    }
    ev.append(quant.run(*a.x, a.xt, M, L.K, a.act, a.input_scale, /*padded_codes=*/true));
    set_args(main_k, L.rows, L.sw, quant.codes(), quant.scales(), L.part, *a.y, cl_int(M), cl_int(L.N), cl_int(L.Kp),
             cl_int(bps), cl_int(splits == 1));
    const std::string what = "fp8_block_gemm_wgmma (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) +
                             ", stages=" + std::to_string(stages) + ")";
    // Three warpgroups per output tile: two consumers and the producer.
    oputil::enqueue(c, ev, main_k, cl::NDRange(size_t(n_tiles) * 384, size_t(splits), size_t(m_tiles)),
                    cl::NDRange(384, 1, 1), what);
    if (splits > 1) oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, splits, "fp8_splitk_reduce");
    return ev;
  }
};

}  // namespace

const Fp8Launcher& fp8_nv_wgmma_e4m3_launcher() {
  static const NvWgmmaE4m3 l;
  return l;
}

}  // namespace clq
