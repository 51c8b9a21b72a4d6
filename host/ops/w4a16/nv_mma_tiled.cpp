// w4a16_gemm/nv_mma_tiled (M >= 17 on sm80+): the fragment-layout weights and 16-bit
// activations staged by cp.async into local-memory tiles, activations read by ldmatrix, banded
// raster order, split-K through w4a16_splitk_reduce (kernels_cl/w4a16/nv_mma_tiled.cl).
#include <algorithm>

#include "host/ops/op_util.h"
#include "host/ops/w4a16/w4a16_launcher.h"

namespace clq {

namespace {
int tiled_env(const char* key, int fallback) {
  return oputil::env_knob("CLQ_NV_TILED", key, fallback);
}
}  // namespace

NvTiledConfig nv_tiled_config(const W4A16DeviceLayer& L, const DeviceFeatures& f, int64_t M, DType xt, int requested) {
  NvTiledConfig k;
  auto pick = [](int v, int fallback) { return v == 1 || v == 2 || v == 4 || v == 8 ? v : fallback; };
  k.tn = pick(tiled_env("tn", k.tn), k.tn);
  k.wn = pick(tiled_env("wn", k.wn), k.wn);
  // Row tiles of 32, 64 or 128: the larger, the fewer times each weight tile is staged, as long
  // as the row tiles still give every compute unit work.
  k.mbw = pick(tiled_env("mbw", M >= 256 ? 8 : k.mbw), k.mbw);
  k.wm = pick(tiled_env("wm", M >= 48 ? k.wm : 1), k.wm);
  if (k.threads() > 1024) k.wm = 1;
  // Deeper pipelines where the row tile is small; whatever fits the device's local memory.
  k.stages = std::clamp(tiled_env("stages", k.rows() >= 128 ? 2 : k.rows() >= 64 ? 3 : 4), 2, 4);
  const auto stage_bytes = [&](int s) {
    return uint64_t(s) * (uint64_t(k.rows()) * 128 + uint64_t(k.tiles()) * 576) + 64;
  };
  const uint64_t local = f.local_mem ? f.local_mem : 48 * 1024;
  while (k.stages > 2 && stage_bytes(k.stages) > local) --k.stages;
  if (stage_bytes(k.stages) > local) k = NvTiledConfig{};
  k.gm = std::clamp(tiled_env("gm", k.gm), 1, 64);
  // Split K only when the tiles alone leave compute units idle; each range keeps 8 chunks.
  const int64_t wgs = ((L.tiles + k.tiles() - 1) / k.tiles()) * ((M + k.rows() - 1) / k.rows());
  const int64_t target = int64_t(f.compute_units) * std::max(1, tiled_env("wgs", 2));
  int64_t splits = requested > 0 ? requested : (target + wgs - 1) / wgs;
  splits = std::clamp<int64_t>(splits, 1, std::max<int64_t>(1, requested > 0 ? L.chunks : L.chunks / 8));
  const int64_t cps = (L.chunks + splits - 1) / splits;
  k.splits = int((L.chunks + cps - 1) / cps);
  k.direct = L.identity_perm && (xt == DType::kF16 || xt == DType::kBF16) && L.chunks * 64 == L.K;
  return k;
}

namespace {

class NvMmaTiled final : public W4A16Launcher {
 public:
  NvMmaTiled() : W4A16Launcher("nv_mma_tiled", {"w4a16/nv_mma_tiled.cl", "w4a16/gather.cl", "w4a16/gemv.cl"}) {}

  Check can_implement(const W4A16DeviceLayer& L, const W4A16Call& a, const DeviceFeatures& f) const override {
    if (!L.has_fragment_layout())
      return Check::refuse(Status::kNotSupported, "nv_mma_tiled needs the fragment layout, which is uploaded only "
                                                  "where the mma.sync f16 probe passed");
    return Check::pass();
  }

  OpEvents enqueue(Context& c, W4A16DeviceLayer& L, const W4A16Call& a) const override {
    const int64_t M = a.M;
    const NvTiledConfig k = nv_tiled_config(L, c.features(), M, a.xt, a.opt.splits);
    const int64_t ld = L.chunks * 64;
    if (!k.direct) oputil::grow_scratch(c, L.xp, L.xp_bytes, size_t(M) * size_t(ld) * 2);
    oputil::grow_scratch(c, L.part, L.part_bytes, k.splits > 1 ? size_t(k.splits) * size_t(M) * size_t(L.N) * 4 : 4);
    const bool bf16 = a.xt == DType::kBF16;
    const std::string defs = oputil::io_defines(a.xt, a.yt);
    cl::Kernel main_k = c.kernel("w4a16/nv_mma_tiled.cl", "w4a16_gemm_nv_tiled",
                                 defs + " -DMMA_BF16=" + (bf16 ? "1" : "0") + " -DTN=" + std::to_string(k.tn) +
                                     " -DWN=" + std::to_string(k.wn) + " -DMBW=" + std::to_string(k.mbw) +
                                     " -DWM=" + std::to_string(k.wm) + " -DSTAGES=" + std::to_string(k.stages) +
                                     " -DGM=" + std::to_string(k.gm));
    OpEvents ev;
    if (!k.direct) {
      cl::Kernel gather =
          c.kernel("w4a16/gather.cl", "w4a16_gather_h16", defs + " -DHALF_BF16=" + std::string(bf16 ? "1" : "0"));
      set_args(gather, *a.x, L.perm, L.xp, cl_int(M), cl_int(L.K), cl_int(L.Kp), cl_int(ld));
      oputil::enqueue(c, ev, gather, cl::NDRange(oputil::round_up(size_t(ld / 8), 64), size_t(M)), cl::NDRange(64, 1),
                    "w4a16_gather_h16");
    }
    const int64_t cps = (L.chunks + k.splits - 1) / k.splits;
    const int64_t wg_cols = (L.tiles + k.tiles() - 1) / k.tiles(), wg_rows = (M + k.rows() - 1) / k.rows();
    set_args(main_k, L.qf, L.sz, L.wgroupf, L.descf, k.direct ? *a.x : L.xp, L.part, *a.y, cl_int(M), cl_int(L.N),
             cl_int(L.tiles), cl_int(L.chunks), cl_int(k.direct ? L.K : ld), cl_int(cps));
    const size_t threads = size_t(k.threads());
    const std::string what =
        "w4a16_gemm_nv_tiled (M=" + std::to_string(M) + ", splits=" + std::to_string(k.splits) + ")";
    oputil::enqueue(c, ev, main_k, cl::NDRange(size_t(wg_cols) * threads, size_t(k.splits), size_t(wg_rows)),
                  cl::NDRange(threads, 1, 1), what);
    if (k.splits > 1) {
      cl::Kernel reduce = c.kernel("w4a16/gemv.cl", "w4a16_splitk_reduce", defs);
      oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *a.y, M, L.N, k.splits, "w4a16_splitk_reduce");
    }
    return ev;
  }
};

}  // namespace

const W4A16Launcher& w4a16_nv_mma_tiled_launcher() {
  static const NvMmaTiled l;
  return l;
}

}  // namespace clq
