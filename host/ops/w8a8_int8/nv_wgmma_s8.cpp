// w8a8_int8_gemm/nv_wgmma_s8 (sm_90a through the PTX patch path): wgmma m64n128k32 s8 on the FP8
// prefill's pipeline (kernels_cl/common/wgmma_gemm.clh; kernels_cl/w8a8_int8/nv_wgmma_s8.cl).
// Reads the weights row by row, K contiguous, so the first call uploads that copy from the host
// codes once and the layer keeps it; asks the quantizer for rows padded to a multiple of 128
// bytes; split-K (int32 partials, exact) when the output tiles alone would leave compute units idle.
#include <algorithm>

#include "host/ops/op_util.h"
#include "host/ops/w8a8_int8/w8a8_int8_launcher.h"
#include "host/ops/wgmma_patch.h"

namespace clq {

namespace {

constexpr int64_t kTile = 128;         // output rows and columns per work-group
constexpr size_t kStageBytes = 32768;  // one 128-wide K step of A and B

int64_t padded_k(const W8A8Int8DeviceLayer& L) { return (L.K + kTile - 1) / kTile * kTile; }

class NvWgmmaS8 final : public W8A8Int8Launcher {
 public:
  NvWgmmaS8() : W8A8Int8Launcher("nv_wgmma_s8", {"w8a8_int8/nv_wgmma_s8.cl", "w8a8_int8/quant.cl"}) {}

  int64_t code_words(const W8A8Int8DeviceLayer& L) const override { return padded_k(L) / 4; }

  Check can_implement(const W8A8Int8DeviceLayer& L, const W8A8Int8Call& a, const DeviceFeatures& f) const override {
    const size_t rows_bytes = size_t(oputil::round_up(size_t(L.N), kTile)) * size_t(padded_k(L));
    if (rows_bytes > f.max_alloc)
      return Check::refuse(Status::kInvalidShape, "nv_wgmma_s8 keeps a row-major copy of the weights (" +
                                                      std::to_string(rows_bytes) + " bytes), above the device's max allocation");
    if (double(a.M) * double(padded_k(L)) >= 2147483647.0)
      return Check::refuse(Status::kInvalidShape, "nv_wgmma_s8 addresses activation rows with 32-bit offsets: M = " +
                                                      std::to_string(a.M) + " x padded K = " +
                                                      std::to_string(padded_k(L)) + " must stay below 2^31");
    return Check::pass();
  }

  OpEvents enqueue(Context& c, W8A8Int8DeviceLayer& L, const W8A8Int8Call& a, const cl::Buffer& codes,
                   const cl::Buffer& scales) const override {
    const int64_t M = a.M, Kp = padded_k(L), steps = Kp / kTile;
    const int64_t n_tiles = (L.N + kTile - 1) / kTile, m_tiles = (M + kTile - 1) / kTile;
    // Split K only while the tiles leave compute units idle, keeping at least 8 steps per range.
    int64_t splits = a.splits;
    if (splits <= 0) {
      const int64_t cu = c.features().compute_units, tiles = n_tiles * m_tiles;
      splits = std::max<int64_t>(1, std::min<int64_t>(cu / std::max<int64_t>(tiles, 1), steps / 8));
    }
    splits = std::clamp<int64_t>(splits, 1, steps);
    const int64_t sps = (steps + splits - 1) / splits;
    splits = (steps + sps - 1) / sps;  // no empty range
    const int stages = std::clamp(oputil::env_knob("CLQ_NV_WGMMA", "stages", 6), 2, 7);
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    // Every kernel is built, and every buffer allocated, before anything is enqueued.
    cl::Kernel main_k = c.kernel_patched("w8a8_int8/nv_wgmma_s8.cl", "w8a8_int8_gemm_wgmma",
                                         defs + " -DSTAGES=" + std::to_string(stages),
                                         wgmma_patch(size_t(stages) * kStageBytes + 1024, WgmmaOperands::kS8));
    cl::Kernel reduce;
    if (splits > 1) reduce = c.kernel("w8a8_int8/nv_wgmma_s8.cl", "w8a8_int8_splitk_reduce", defs);
    oputil::grow_scratch(c, L.part, L.part_bytes, splits > 1 ? size_t(splits) * size_t(M) * size_t(L.N) * 4 : 4);
    if (!L.have_rows) {
      const int64_t Npw = n_tiles * kTile;
      std::vector<int8_t> rows(size_t(Npw * Kp), 0);
      for (int64_t n = 0; n < L.N; ++n)
        std::copy_n(L.w->w.data() + size_t(n * L.K), size_t(L.K), rows.data() + size_t(n * Kp));
      L.rows = c.alloc(rows.size(), CL_MEM_READ_ONLY);
      c.write(L.rows, rows.data(), rows.size());
      L.have_rows = true;
    }
    set_args(main_k, L.rows, L.sw, codes, scales, L.part, *a.y, cl_int(M), cl_int(L.N), cl_int(Kp), cl_int(sps),
             cl_int(splits == 1));
    OpEvents ev;
    const std::string what = "w8a8_int8_gemm_wgmma (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) +
                             ", stages=" + std::to_string(stages) + ")";
    // Three warpgroups per output tile: two consumers and the producer.
    oputil::enqueue(c, ev, main_k, cl::NDRange(size_t(n_tiles) * 384, size_t(splits), size_t(m_tiles)),
                    cl::NDRange(384, 1, 1), what);
    if (splits > 1) {
      set_args(reduce, L.part, scales, L.sw, *a.y, cl_int(M), cl_int(L.N), cl_int(splits));
      oputil::enqueue(c, ev, reduce, cl::NDRange(oputil::round_up(size_t(L.N), 64), size_t(M)), cl::NDRange(64, 1),
                      "w8a8_int8_splitk_reduce");
    }
    return ev;
  }
};

}  // namespace

const W8A8Int8Launcher& w8a8_int8_nv_wgmma_s8_launcher() {
  static const NvWgmmaS8 l;
  return l;
}

}  // namespace clq
