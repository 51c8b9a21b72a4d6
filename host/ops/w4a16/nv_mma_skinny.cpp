// w4a16_gemm/nv_mma_skinny (M <= 16 on sm80+): the int4 weights are the mma.sync m16n8k16 A
// operand in the fragment-matched layout, so one row of activations wastes 7/8 of B rather than
// 15/16 of A; split-K is summed in the same launch by the last work-group to arrive
// (kernels_cl/w4a16/nv_mma_skinny.cl has the picture). A few rows are read in place; more go
// through w4a16_gather_frag, which writes them in fragment order.
#include <algorithm>

#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

namespace {
int skinny_env(const char* key, int fallback) {
  return oputil::env_knob("CLQ_NV_SKINNY", key, fallback);
}
}  // namespace

NvSkinnyConfig nv_skinny_config(const W4A16DeviceLayer& L, const DeviceFeatures& f, int64_t M, DType xt, int requested) {
  NvSkinnyConfig k;
  k.mb = M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8;
  k.nt = std::clamp(skinny_env("nt", k.mb >= 4 ? 2 : k.nt), 1, 4);
  k.kw = std::clamp(skinny_env("kw", k.kw), 1, 8);
  // One chunk per batch measured best on the H200 (more costs registers, hence warps).
  k.unroll = skinny_env("unroll", k.unroll);
  if (k.unroll != 1 && k.unroll != 2 && k.unroll != 4) k.unroll = 1;
  // Work-groups per compute unit to aim for; split-K makes up what the columns alone lack.
  const int64_t per_cu = std::max(1, skinny_env("wgs", 8));
  const int64_t wgs = ((L.tiles + k.nt - 1) / k.nt) * ((M + 8 * k.mb - 1) / (8 * k.mb));
  const int64_t most = std::max<int64_t>(1, L.chunks / k.kw);  // every warp keeps a chunk
  int64_t splits = requested > 0 ? requested : (int64_t(f.compute_units) * per_cu + wgs - 1) / wgs;
  splits = std::clamp<int64_t>(splits, 1, most);
  const int64_t cps = (L.chunks + splits - 1) / splits;
  k.splits = int((L.chunks + cps - 1) / cps);
  // A few rows are read where they are (a row per lane group, one L1 wavefront per load) rather
  // than paying the fragment gather's launch; more rows make those loads 8-way scattered.
  k.direct = L.identity_perm && (xt == DType::kF16 || xt == DType::kBF16) && M <= skinny_env("direct", 4);
  return k;
}

namespace {

class NvMmaSkinny final : public W4A16Launcher {
 public:
  NvMmaSkinny() : W4A16Launcher("nv_mma_skinny", {"w4a16/nv_mma_skinny.cl", "w4a16/gather.cl"}) {}

  Check can_implement(const W4A16DeviceLayer& L, const W4A16Call& a, const DeviceFeatures& f) const override {
    if (!L.has_fragment_layout())
      return Check::refuse(Status::kNotSupported, "nv_mma_skinny needs the fragment layout, which is uploaded only "
                                                  "where the mma.sync f16 probe passed");
    return Check::pass();
  }

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    const int64_t M = a.M;
    const NvSkinnyConfig k = nv_skinny_config(L, c.features(), M, a.xt, a.opt.splits);
    const int64_t wg_cols = (L.tiles + k.nt - 1) / k.nt, row_blocks = (M + 8 * k.mb - 1) / (8 * k.mb);
    // Activation fragments: 32 bytes per lane, chunk and block of 8 rows, for every row block read.
    if (!k.direct) oputil::grow_scratch(c, L.xp, L.xp_bytes, size_t(row_blocks * k.mb) * size_t(L.chunks) * 32 * 32);
    oputil::grow_scratch(c, L.part, L.part_bytes, k.splits > 1 ? size_t(k.splits) * size_t(M) * size_t(L.N) * 4 : 4);
    // One arrival counter per output tile; each launch's last work-group sets its counter back to 0.
    const size_t need_count = size_t(wg_cols * row_blocks) * 4;
    if (oputil::grow_scratch(c, L.count, L.count_bytes, need_count)) c.fill_u32(L.count, 0u, need_count);
    const bool bf16 = a.xt == DType::kBF16;
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    cl::Kernel main_k = c.kernel("w4a16/nv_mma_skinny.cl", "w4a16_gemm_nv_skinny",
                                 defs + " -DMMA_BF16=" + (bf16 ? "1" : "0") + " -DNT=" + std::to_string(k.nt) +
                                     " -DMB=" + std::to_string(k.mb) + " -DKW=" + std::to_string(k.kw) +
                                     " -DUNROLL=" + std::to_string(k.unroll) + " -DXDIRECT=" + (k.direct ? "1" : "0"));
    OpEvents ev;
    if (!k.direct) {
      cl::Kernel gather =
          c.kernel("w4a16/gather.cl", "w4a16_gather_frag", defs + " -DHALF_BF16=" + std::string(bf16 ? "1" : "0"));
      set_args(gather, *a.x, L.perm, L.xp, cl_int(M), cl_int(L.K), cl_int(L.Kp), cl_int(L.chunks));
      oputil::enqueue(c, ev, gather, cl::NDRange(size_t(L.chunks) * 128, size_t(row_blocks * k.mb)), cl::NDRange(128, 1),
                    "w4a16_gather_frag");
    }
    const int64_t cps = (L.chunks + k.splits - 1) / k.splits;
    set_args(main_k, L.qf, L.sz, L.wgroupf, L.descf, k.direct ? *a.x : L.xp, L.part, L.count, *a.y, cl_int(M),
             cl_int(L.N), cl_int(L.K), cl_int(L.tiles), cl_int(L.chunks), cl_int(cps));
    const std::string what =
        "w4a16_gemm_nv_skinny (M=" + std::to_string(M) + ", splits=" + std::to_string(k.splits) + ")";
    oputil::enqueue(c, ev, main_k, cl::NDRange(size_t(wg_cols) * 32 * size_t(k.kw), size_t(k.splits), size_t(row_blocks)),
                  cl::NDRange(32 * size_t(k.kw), 1, 1), what);
    return ev;
  }
};

}  // namespace

const W4A16Launcher& w4a16_nv_mma_skinny_launcher() {
  static const NvMmaSkinny l;
  return l;
}

}  // namespace clq
