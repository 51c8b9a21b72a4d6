#include "host/ops/w4a16/w4a16_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "host/ops/layout.h"
#include "host/ops/op_util.h"
#include "host/caps/tuning.h"
#include "runtime/status.h"

namespace clq {

using oputil::dtype_code;
using oputil::gemv_rows;
using oputil::grow_scratch;
using oputil::launch_splitk_reduce;
using oputil::io_defines;
using oputil::round_up;

double W4A16Problem::bytes() const {
  int64_t G = group_size == -1 ? 1 : (K + group_size - 1) / group_size;
  double weights = double(K) * double(N) / 2 + double(G) * double(N) * 3;
  return weights + double(M) * double(K + N) * double(dtype_size(act));
}

std::string W4A16Problem::label() const {
  return std::string(w4_format_name(format)) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
         " K=" + std::to_string(K) + " g" + std::to_string(group_size) + (act_order ? " act" : "") + " " +
         dtype_name(act);
}

namespace {

// The nv_mma_skinny weight layout (kernels_cl/w4a16_gemm_nv_skinny.cl has the picture): per
// 16-column tile and 64-row chunk, one uint4 per lane whose words are the lane's A fragments of
// the chunk's four 16-row steps; rows past Kp and columns past N hold 0.
struct FragLayout {
  int64_t tiles = 0, chunks = 0;
  std::vector<uint32_t> qf;      // [tiles][chunks][32][4]
  std::vector<uint32_t> sz;      // [G][tiles][8][2]
  std::vector<int32_t> wgroup;   // [chunks * 8], padding words in the last group
  std::vector<int32_t> desc;     // [chunks] group of the first word, | kMixed if the words span groups
  static constexpr int32_t kMixed = 0x40000000;
};

FragLayout frag_layout(const W4Packed& p) {
  FragLayout f;
  f.tiles = (p.N + 15) / 16;
  f.chunks = (p.Kp + 63) / 64;
  const int64_t words = p.Kp / 8;
  auto nib = [&](int64_t w, int64_t n, int i) -> uint32_t {
    return w < words && n < p.N ? (p.qw[size_t(w * p.N + n)] >> (4 * i)) & 15u : 0u;
  };
  f.qf.assign(size_t(f.tiles * f.chunks * 128), 0u);
  for (int64_t T = 0; T < f.tiles; ++T)
    for (int64_t c = 0; c < f.chunks; ++c)
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        for (int s = 0; s < 4; ++s) {
          const int64_t wa = (c * 4 + s) * 2;
          uint32_t word = 0;
          for (int r = 0; r < 4; ++r)
            for (int h = 0; h < 2; ++h)
              word |= nib(wa + (r >> 1), T * 16 + g + (r & 1) * 8, 2 * t + h) << (4 * r + 16 * h);
          f.qf[size_t(((T * f.chunks + c) * 32 + lane) * 4 + s)] = word;
        }
      }
  f.sz.assign(size_t(p.G * f.tiles * 16), 0u);
  for (int64_t grp = 0; grp < p.G; ++grp)
    for (int64_t T = 0; T < f.tiles; ++T)
      for (int g = 0; g < 8; ++g) {
        const int64_t n0 = T * 16 + g, n1 = n0 + 8;
        const uint32_t s0 = n0 < p.N ? p.scales[size_t(grp * p.N + n0)] : 0x3C00u;
        const uint32_t s1 = n1 < p.N ? p.scales[size_t(grp * p.N + n1)] : 0x3C00u;
        const uint32_t z0 = n0 < p.N ? p.zeros[size_t(grp * p.N + n0)] : 0u;
        const uint32_t z1 = n1 < p.N ? p.zeros[size_t(grp * p.N + n1)] : 0u;
        const size_t at = size_t(((grp * f.tiles + T) * 8 + g) * 2);
        f.sz[at] = s0 | (s1 << 16);
        f.sz[at + 1] = z0 | (z1 << 16);
      }
  f.wgroup.assign(size_t(f.chunks * 8), int32_t(p.G - 1));
  std::copy(p.wgroup.begin(), p.wgroup.end(), f.wgroup.begin());
  f.desc.resize(size_t(f.chunks));
  for (int64_t c = 0; c < f.chunks; ++c) {
    const int32_t* w = &f.wgroup[size_t(c * 8)];
    f.desc[size_t(c)] = w[0] | (std::equal(w + 1, w + 8, w) ? 0 : FragLayout::kMixed);
  }
  return f;
}

// CLQ_NV_SKINNY="nt=2,kw=4,unroll=4,wgs=8,direct=4" and CLQ_NV_TILED="tn=4,wn=2,mbw=4,wm=2,stages=3,wgs=2"
// override the launch shapes of the tensor-core variants (sweeps).
int env_knob(const char* var, const char* key, int fallback) {
  const char* e = std::getenv(var);
  if (!e) return fallback;
  std::string s(e), k = std::string(key) + "=";
  size_t at = 0;
  while (at < s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    if (s.compare(at, k.size(), k) == 0) return std::atoi(s.c_str() + at + k.size());
    at = end + 1;
  }
  return fallback;
}
int skinny_env(const char* key, int fallback) { return env_knob("CLQ_NV_SKINNY", key, fallback); }
int tiled_env(const char* key, int fallback) { return env_knob("CLQ_NV_TILED", key, fallback); }

}  // namespace

W4A16Gemm::W4A16Gemm(Context& c, const W4Packed& p) : c_(c), K_(p.K), N_(p.N), Kp_(p.Kp), G_(p.G) {
  if (p.qw.size() != size_t(p.Kp / 8 * p.N) || p.scales.size() != size_t(p.G * p.N) ||
      p.zeros.size() != size_t(p.G * p.N) || p.perm.size() != size_t(p.Kp) || p.gstart.size() != size_t(p.G + 1) ||
      p.wgroup.size() != size_t(p.Kp / 8))
    fail(Status::kInvalidArgument, "W4Packed arrays disagree with K=" + std::to_string(p.K) +
                                       " N=" + std::to_string(p.N) + " Kp=" + std::to_string(p.Kp) +
                                       " G=" + std::to_string(p.G) + " (use repack_w4)");
  const W4A16Tuning& t = w4a16_tuning(c.features());
  const GemvLayout lay = gemv_layout(t, N_);
  cols_ = lay.cols;
  rows_max_ = lay.max_rows;
  Np_ = lay.Np;
  block_n_ = lay.block_n;
  if (Np_ % block_n_ != 0 || block_n_ % cols_ != 0)
    fail(Status::kInternal, "w4a16 tuning '" + std::string(t.name) + "' has inconsistent block " +
                                std::to_string(block_n_) + " / cols " + std::to_string(cols_));
  // Offsets are int in the kernels: keep every index below 2^31.
  if (double(p.Kp / 8) * double(Np_) >= 2147483647.0)
    fail(Status::kInvalidShape, "int4 layer K=" + std::to_string(p.K) + " x N=" + std::to_string(p.N) +
                                    " is too large for 32-bit word indices");
  // Device layout: columns padded to Np (zero weights, unit scale), stored in column blocks.
  std::vector<uint32_t> qw = column_blocks(p.qw.data(), Kp_ / 8, N_, Np_, block_n_);
  std::vector<uint16_t> scales = pad_columns<uint16_t>(p.scales.data(), G_, N_, Np_, 0x3C00);
  std::vector<uint8_t> zeros = pad_columns<uint8_t>(p.zeros.data(), G_, N_, Np_, 0);
  auto upload = [&](const void* data, size_t bytes) {
    cl::Buffer b = c_.alloc(bytes, CL_MEM_READ_ONLY);
    c_.write(b, data, bytes);
    return b;
  };
  qw_ = upload(qw.data(), qw.size() * 4);
  scales_ = upload(scales.data(), scales.size() * 2);
  zeros_ = upload(zeros.data(), zeros.size());
  perm_ = upload(p.perm.data(), p.perm.size() * 4);
  gstart_ = upload(p.gstart.data(), p.gstart.size() * 4);
  wgroup_ = upload(p.wgroup.data(), p.wgroup.size() * 4);

  identity_perm_ = !p.act_order;
  for (int64_t r = 0; r < Kp_ && identity_perm_; ++r) identity_perm_ = p.perm[size_t(r)] == (r < K_ ? r : -1);
  // The tensor-core layout is a second copy of the weights, kept only where its variant can run.
  if (feature_mask(c.features()) & kFeatNvMmaF16) {
    FragLayout f = frag_layout(p);
    tiles_ = f.tiles;
    chunks_ = f.chunks;
    qf_ = upload(f.qf.data(), f.qf.size() * 4);
    sz_ = upload(f.sz.data(), f.sz.size() * 4);
    wgroupf_ = upload(f.wgroup.data(), f.wgroup.size() * 4);
    descf_ = upload(f.desc.data(), f.desc.size() * 4);
  }
}

NvSkinnyConfig W4A16Gemm::skinny_config(int64_t M, DType xt, const W4A16RunOptions& opt) const {
  NvSkinnyConfig k;
  k.mb = M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8;
  k.nt = std::clamp(skinny_env("nt", k.mb >= 4 ? 2 : 1), 1, 4);
  k.kw = std::clamp(skinny_env("kw", 4), 1, 8);
  // One chunk per batch measured best on the H200 (more costs registers, hence warps).
  k.unroll = skinny_env("unroll", 1);
  if (k.unroll != 1 && k.unroll != 2 && k.unroll != 4) k.unroll = 1;
  // Work-groups per compute unit to aim for; split-K makes up what the columns alone lack.
  const int64_t per_cu = std::max(1, skinny_env("wgs", 8));
  const int64_t wgs = ((tiles_ + k.nt - 1) / k.nt) * ((M + 8 * k.mb - 1) / (8 * k.mb));
  const int64_t most = std::max<int64_t>(1, chunks_ / k.kw);  // every warp keeps a chunk
  int64_t splits = opt.splits > 0 ? opt.splits : (int64_t(c_.features().compute_units) * per_cu + wgs - 1) / wgs;
  splits = std::clamp<int64_t>(splits, 1, most);
  const int64_t cps = (chunks_ + splits - 1) / splits;
  k.splits = int((chunks_ + cps - 1) / cps);
  // A few rows are read where they are (a row per lane group, one L1 wavefront per load) rather
  // than paying the fragment gather's launch; more rows make those loads 8-way scattered.
  k.direct = identity_perm_ && (xt == DType::kF16 || xt == DType::kBF16) && M <= skinny_env("direct", 4);
  return k;
}

NvTiledConfig W4A16Gemm::tiled_config(int64_t M, DType xt, const W4A16RunOptions& opt) const {
  NvTiledConfig k;
  auto pick = [](int v, int fallback) { return v == 1 || v == 2 || v == 4 || v == 8 ? v : fallback; };
  k.tn = pick(tiled_env("tn", k.tn), k.tn);
  k.wn = pick(tiled_env("wn", k.wn), k.wn);
  // Row tiles of 32, 64 or 128: the larger, the fewer times each weight tile is staged, as long
  // as the row tiles still give every compute unit work.
  k.mbw = pick(tiled_env("mbw", M >= 256 ? 8 : 4), 4);
  k.wm = pick(tiled_env("wm", M >= 48 ? 2 : 1), 2);
  if (k.threads() > 1024) k.wm = 1;
  // Deeper pipelines where the row tile is small; whatever fits the device's local memory.
  k.stages = std::clamp(tiled_env("stages", k.rows() >= 128 ? 2 : k.rows() >= 64 ? 3 : 4), 2, 4);
  const auto stage_bytes = [&](int s) { return uint64_t(s) * (uint64_t(k.rows()) * 128 + uint64_t(k.tiles()) * 576) + 64; };
  const uint64_t local = c_.features().local_mem ? c_.features().local_mem : 48 * 1024;
  while (k.stages > 2 && stage_bytes(k.stages) > local) --k.stages;
  if (stage_bytes(k.stages) > local) k = NvTiledConfig{};
  k.gm = std::clamp(tiled_env("gm", k.gm), 1, 64);
  // Split K only when the tiles alone leave compute units idle; each range keeps 8 chunks.
  const int64_t wgs = ((tiles_ + k.tiles() - 1) / k.tiles()) * ((M + k.rows() - 1) / k.rows());
  const int64_t target = int64_t(c_.features().compute_units) * std::max(1, tiled_env("wgs", 2));
  int64_t splits = opt.splits > 0 ? opt.splits : (target + wgs - 1) / wgs;
  splits = std::clamp<int64_t>(splits, 1, std::max<int64_t>(1, opt.splits > 0 ? chunks_ : chunks_ / 8));
  const int64_t cps = (chunks_ + splits - 1) / splits;
  k.splits = int((chunks_ + cps - 1) / cps);
  k.direct = identity_perm_ && (xt == DType::kF16 || xt == DType::kBF16) && chunks_ * 64 == K_;
  return k;
}

void W4A16Gemm::can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const {
  if (M < 1) fail(Status::kInvalidArgument, "M = " + std::to_string(M) + ": need at least one row of activations");
  if (double(M) * double(Kp_) >= 2147483647.0 || double(M) * double(N_) >= 2147483647.0)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " with K = " + std::to_string(K_) +
                                    ", N = " + std::to_string(N_) + " exceeds 32-bit element indices; split the batch");
  oputil::check_io_buffers(M, K_, N_, xt, yt, x_bytes, y_bytes);
  size_t scratch = size_t(M) * size_t(Kp_) * 4;
  if (scratch > c_.features().max_alloc)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " needs a " + std::to_string(scratch) +
                                    "-byte activation scratch, above the device's max allocation; split the batch");
}

const VariantRow& W4A16Gemm::choose(int64_t M, const std::string& variant) const {
  return select_variant("w4a16_gemm", c_.features(), M, variant);
}

// 16-row tiles per warp: one for skinny M, four once there are rows enough to amortize the
// dequantization of each B fragment over them.
int W4A16Gemm::mma_tiles(int64_t M) const {
  return M >= 64 ? 4 : 1;
}

int W4A16Gemm::mma_splits(int64_t M, const W4A16RunOptions& opt) const {
  const int64_t words = Kp_ / 8;
  if (opt.splits > 0) return int(std::min<int64_t>(opt.splits, words / 2));
  // Enough warps to cover memory latency: ~32 per compute unit, each split at least 128 rows.
  const int64_t cols = mma_tiles(M) > 1 ? 32 : 64, rows = 16 * mma_tiles(M);
  const int64_t warps = ((Np_ + cols - 1) / cols) * ((M + rows - 1) / rows);
  const int64_t target = int64_t(c_.features().compute_units) * 32;
  return int(std::max<int64_t>(1, std::min<int64_t>((target + warps - 1) / warps, words / 16)));
}

int W4A16Gemm::gemv_splits(int64_t M, const W4A16RunOptions& opt) const {
  const int64_t words = Kp_ / 8;
  int64_t splits = opt.splits;
  if (splits <= 0) {
    // Enough work-items in flight to cover memory latency on a GPU; a CPU runs a work-group per
    // core and needs none.
    const auto& f = c_.features();
    const int64_t items = (Np_ / cols_) * ((M + gemv_rows(M, rows_max_) - 1) / gemv_rows(M, rows_max_));
    const W4A16Tuning& t = w4a16_tuning(f);
    const int64_t target = int64_t(f.compute_units) * t.items_per_cu;
    splits = std::max<int64_t>(1, std::min<int64_t>((target + items - 1) / items, words / 8));
    if (t.max_split_floats > 0) {
      const int64_t max_words = std::max<int64_t>(8, t.max_split_floats / (8 * gemv_rows(M, rows_max_)));
      splits = std::max<int64_t>(splits, (words + max_words - 1) / max_words);
    }
  }
  splits = std::min<int64_t>(std::max<int64_t>(splits, 1), words);
  int64_t wps = (words + splits - 1) / splits;
  return int((words + wps - 1) / wps);
}

OpEvents W4A16Gemm::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                        const W4A16RunOptions& opt) {
  size_t xb = 0, yb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  y.getInfo(CL_MEM_SIZE, &yb);
  can_implement(M, xt, yt, xb, yb);
  const VariantRow& row = choose(M, opt.variant);
  const std::string variant = row.variant;
  if (variant == "nv_mma_skinny" || variant == "nv_mma_tiled") {
    if (!has_fragment_layout())
      fail(Status::kInternal, variant + " chosen but the layer was uploaded without its fragment layout");
    return variant == "nv_mma_skinny" ? run_skinny(x, xt, y, yt, M, row, opt) : run_tiled(x, xt, y, yt, M, row, opt);
  }
  const int64_t words = Kp_ / 8;
  int splits = variant == "gemv" ? gemv_splits(M, opt) : variant == "nv_mma" ? mma_splits(M, opt) : 1;
  // mma steps are 16 rows: a split covers whole pairs of words (words is a multiple of 4).
  const int64_t wps = variant == "nv_mma" ? ((words + splits - 1) / splits + 1) / 2 * 2 : (words + splits - 1) / splits;
  if (variant == "nv_mma") splits = int((words + wps - 1) / wps);

  // Scratch first, so a failed allocation leaves nothing enqueued.
  size_t need_xp = size_t(M) * size_t(Kp_) * 4;
  grow_scratch(c_, xp_, xp_bytes_, need_xp);
  size_t need_xw = size_t(M) * size_t(Kp_ / 8) * 4;
  grow_scratch(c_, xw_, xw_bytes_, need_xw);
  size_t need_part = splits > 1 ? size_t(splits) * size_t(M) * size_t(N_) * 4 : 4;
  grow_scratch(c_, part_, part_bytes_, need_part);
  const std::string defs = io_defines(xt, yt);
  // Each variant reads the activations in its own form: nibble-scaled fp32 (gemv), fp32 (tiled),
  // or the 16-bit operand type of the tensor cores (nv_mma: bf16 for bf16 input, else fp16).
  const bool mma_bf16 = xt == DType::kBF16;
  const std::string gather_defs = variant == "gemv" ? " -DNIBBLE_SCALED=1"
                                  : variant == "nv_mma"
                                      ? std::string(" -DHALF_OUT=1 -DHALF_BF16=") + (mma_bf16 ? "1" : "0")
                                      : "";
  cl::Kernel gather = c_.kernel("w4a16/gather.cl", "w4a16_gather_x", defs + gather_defs);
  cl::Kernel main_k, reduce;
  if (variant == "gemv") {
    main_k = c_.kernel(row.kernel_file, "w4a16_gemv",
                       defs + " -DGEMV_M=" + std::to_string(gemv_rows(M, rows_max_)) +
                           " -DVEC_COLS=" + std::to_string(cols_) + " " + row.defines);
    if (splits > 1)
      reduce = c_.kernel(row.kernel_file, "w4a16_splitk_reduce",
                         defs + " -DGEMV_M=" + std::to_string(gemv_rows(M, rows_max_)) +
                             " -DVEC_COLS=" + std::to_string(cols_) + " " + row.defines);
  } else if (variant == "tiled") {
    main_k = c_.kernel(row.kernel_file, "w4a16_gemm_tiled", defs + " " + row.defines);
  } else if (variant == "nv_mma") {
    main_k = c_.kernel(row.kernel_file, "w4a16_gemm_nv_mma",
                       defs + " -DMMA_BF16=" + (mma_bf16 ? "1" : "0") + " -DMT=" + std::to_string(mma_tiles(M)) +
                           " -DNF=" + std::to_string(mma_tiles(M) > 1 ? 4 : 8) + " " + row.defines);
    if (splits > 1) reduce = c_.kernel("w4a16/gemv.cl", "w4a16_splitk_reduce", defs);
  } else {
    fail(Status::kInternal, "w4a16_gemm has no launcher for variant '" + variant + "'");
  }

  OpEvents ev;
  set_args(gather, x, perm_, xp_, xw_, cl_int(M), cl_int(K_), cl_int(Kp_));
  ev.first =
      launch(c_, gather, cl::NDRange(round_up(size_t(Kp_ / 8), 64), size_t(M)), cl::NDRange(64, 1), "w4a16_gather_x");
  if (variant == "gemv") {
    const int rows = gemv_rows(M, rows_max_);
    set_args(main_k, qw_, scales_, zeros_, gstart_, wgroup_, xp_, xw_, part_, y, cl_int(M), cl_int(N_), cl_int(Np_),
             cl_int(block_n_), cl_int(Kp_), cl_int(wps), cl_int(splits == 1));
    const size_t local = size_t(w4a16_tuning(c_.features()).gemv_local);
    ev.last = launch(
        c_, main_k, cl::NDRange(round_up(size_t(Np_ / cols_), local), size_t(splits), size_t((M + rows - 1) / rows)),
        cl::NDRange(local, 1, 1), "w4a16_gemv (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) + ")");
    if (splits > 1) {
      ev.last = launch_splitk_reduce(c_, reduce, part_, y, M, N_, splits, "w4a16_splitk_reduce");
    }
  } else if (variant == "nv_mma") {
    set_args(main_k, qw_, scales_, zeros_, wgroup_, xp_, part_, y, cl_int(M), cl_int(N_), cl_int(Np_), cl_int(block_n_),
             cl_int(Kp_), cl_int(wps), cl_int(splits == 1));
    // 4 warps x NF*8 columns x 16*MT rows per work-group (kernels_cl/w4a16_gemm_nv_mma.cl).
    const int64_t wg_cols = 4 * (mma_tiles(M) > 1 ? 4 : 8) * 8, wg_rows = 16 * mma_tiles(M);
    ev.last = launch(
        c_, main_k,
        cl::NDRange(size_t((Np_ + wg_cols - 1) / wg_cols) * 128, size_t(splits), size_t((M + wg_rows - 1) / wg_rows)),
        cl::NDRange(128, 1, 1),
        "w4a16_gemm_nv_mma (M=" + std::to_string(M) + ", splits=" + std::to_string(splits) + ")");
    if (splits > 1) {
      ev.last = launch_splitk_reduce(c_, reduce, part_, y, M, N_, splits, "w4a16_splitk_reduce");
    }
  } else {
    set_args(main_k, qw_, scales_, zeros_, wgroup_, xp_, y, cl_int(M), cl_int(N_), cl_int(Np_), cl_int(block_n_),
             cl_int(Kp_));
    ev.last = launch(c_, main_k, cl::NDRange(size_t((N_ + 63) / 64) * 16, size_t((M + 63) / 64) * 16),
                     cl::NDRange(16, 16), "w4a16_gemm_tiled (M=" + std::to_string(M) + ")");
  }
  return ev;
}

OpEvents W4A16Gemm::run_skinny(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                               const VariantRow& row, const W4A16RunOptions& opt) {
  const NvSkinnyConfig k = skinny_config(M, xt, opt);
  const int64_t wg_cols = (tiles_ + k.nt - 1) / k.nt, row_blocks = (M + 8 * k.mb - 1) / (8 * k.mb);
  // Scratch first, so a failed allocation leaves nothing enqueued. Activation fragments: 32 bytes
  // per lane, chunk and block of 8 rows, for every row block the launch reads.
  const size_t need_xf = size_t(row_blocks * k.mb) * size_t(chunks_) * 32 * 32;
  if (!k.direct) grow_scratch(c_, xp_, xp_bytes_, need_xf);
  const size_t need_part = k.splits > 1 ? size_t(k.splits) * size_t(M) * size_t(N_) * 4 : 4;
  grow_scratch(c_, part_, part_bytes_, need_part);
  // One arrival counter per output tile; each launch's last work-group sets its counter back to 0.
  const size_t need_count = size_t(wg_cols * row_blocks) * 4;
  if (grow_scratch(c_, count_, count_bytes_, need_count)) c_.fill_u32(count_, 0u, need_count);
  const bool bf16 = xt == DType::kBF16;
  const std::string defs = io_defines(xt, yt);
  cl::Kernel gather =
      c_.kernel("w4a16/gather.cl", "w4a16_gather_frag", defs + " -DHALF_BF16=" + std::string(bf16 ? "1" : "0"));
  cl::Kernel main_k = c_.kernel(row.kernel_file, "w4a16_gemm_nv_skinny",
                                defs + " -DMMA_BF16=" + (bf16 ? "1" : "0") + " -DNT=" + std::to_string(k.nt) +
                                    " -DMB=" + std::to_string(k.mb) + " -DKW=" + std::to_string(k.kw) +
                                    " -DUNROLL=" + std::to_string(k.unroll) + " -DXDIRECT=" + (k.direct ? "1" : "0") +
                                    " " + row.defines);
  OpEvents ev;
  if (!k.direct) {
    set_args(gather, x, perm_, xp_, cl_int(M), cl_int(K_), cl_int(Kp_), cl_int(chunks_));
    ev.first = launch(c_, gather, cl::NDRange(size_t(chunks_) * 128, size_t(row_blocks * k.mb)), cl::NDRange(128, 1),
                      "w4a16_gather_frag");
  }
  const int64_t cps = (chunks_ + k.splits - 1) / k.splits;
  set_args(main_k, qf_, sz_, wgroupf_, descf_, k.direct ? x : xp_, part_, count_, y, cl_int(M), cl_int(N_), cl_int(K_),
           cl_int(tiles_), cl_int(chunks_), cl_int(cps));
  ev.last = launch(c_, main_k, cl::NDRange(size_t(wg_cols) * 32 * size_t(k.kw), size_t(k.splits), size_t(row_blocks)),
                   cl::NDRange(32 * size_t(k.kw), 1, 1),
                   "w4a16_gemm_nv_skinny (M=" + std::to_string(M) + ", splits=" + std::to_string(k.splits) + ")");
  if (k.direct) ev.first = ev.last;
  return ev;
}

OpEvents W4A16Gemm::run_tiled(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                              const VariantRow& row, const W4A16RunOptions& opt) {
  const NvTiledConfig k = tiled_config(M, xt, opt);
  const int64_t ld = chunks_ * 64;
  // Scratch first, so a failed allocation leaves nothing enqueued.
  if (!k.direct) grow_scratch(c_, xp_, xp_bytes_, size_t(M) * size_t(ld) * 2);
  const size_t need_part = k.splits > 1 ? size_t(k.splits) * size_t(M) * size_t(N_) * 4 : 4;
  grow_scratch(c_, part_, part_bytes_, need_part);
  const bool bf16 = xt == DType::kBF16;
  const std::string defs = io_defines(xt, yt);
  cl::Kernel gather =
      c_.kernel("w4a16/gather.cl", "w4a16_gather_h16", defs + " -DHALF_BF16=" + std::string(bf16 ? "1" : "0"));
  cl::Kernel main_k = c_.kernel(row.kernel_file, "w4a16_gemm_nv_tiled",
                                defs + " -DMMA_BF16=" + (bf16 ? "1" : "0") + " -DTN=" + std::to_string(k.tn) +
                                    " -DWN=" + std::to_string(k.wn) + " -DMBW=" + std::to_string(k.mbw) +
                                    " -DWM=" + std::to_string(k.wm) + " -DSTAGES=" + std::to_string(k.stages) +
                                    " -DGM=" + std::to_string(k.gm) + " " + row.defines);
  cl::Kernel reduce;
  if (k.splits > 1) reduce = c_.kernel("w4a16/gemv.cl", "w4a16_splitk_reduce", defs);
  OpEvents ev;
  if (!k.direct) {
    set_args(gather, x, perm_, xp_, cl_int(M), cl_int(K_), cl_int(Kp_), cl_int(ld));
    ev.first = launch(c_, gather, cl::NDRange(round_up(size_t(ld / 8), 64), size_t(M)), cl::NDRange(64, 1),
                      "w4a16_gather_h16");
  }
  const int64_t cps = (chunks_ + k.splits - 1) / k.splits;
  const int64_t wg_cols = (tiles_ + k.tiles() - 1) / k.tiles(), wg_rows = (M + k.rows() - 1) / k.rows();
  set_args(main_k, qf_, sz_, wgroupf_, descf_, k.direct ? x : xp_, part_, y, cl_int(M), cl_int(N_), cl_int(tiles_),
           cl_int(chunks_), cl_int(k.direct ? K_ : ld), cl_int(cps));
  const size_t threads = size_t(k.threads());
  ev.last = launch(c_, main_k, cl::NDRange(size_t(wg_cols) * threads, size_t(k.splits), size_t(wg_rows)),
                   cl::NDRange(threads, 1, 1),
                   "w4a16_gemm_nv_tiled (M=" + std::to_string(M) + ", splits=" + std::to_string(k.splits) + ")");
  if (k.direct) ev.first = ev.last;
  if (k.splits > 1) {
    ev.last = launch_splitk_reduce(c_, reduce, part_, y, M, N_, k.splits, "w4a16_splitk_reduce");
  }
  return ev;
}

}  // namespace clq
