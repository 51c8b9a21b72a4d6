#include "host/ops/w4a16/w4a16_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/ops/layout.h"
#include "host/ops/op_util.h"
#include "host/caps/tuning.h"
#include "runtime/status.h"

namespace clq {


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

}  // namespace

W4A16Gemm::W4A16Gemm(Context& c, const W4Packed& p) : IntLayerGemm(c, kOp, w4a16_launchers()) {
  L_.K = p.K;
  L_.N = p.N;
  L_.Kp = p.Kp;
  L_.G = p.G;
  if (p.qw.size() != size_t(p.Kp / 8 * p.N) || p.scales.size() != size_t(p.G * p.N) ||
      p.zeros.size() != size_t(p.G * p.N) || p.perm.size() != size_t(p.Kp) || p.gstart.size() != size_t(p.G + 1) ||
      p.wgroup.size() != size_t(p.Kp / 8))
    fail(Status::kInvalidArgument, "W4Packed arrays disagree with K=" + std::to_string(p.K) +
                                       " N=" + std::to_string(p.N) + " Kp=" + std::to_string(p.Kp) +
                                       " G=" + std::to_string(p.G) + " (use repack_w4)");
  L_.g = gemv_geometry(c.features(), L_.N);
  if (L_.g.Np % L_.g.block_n != 0 || L_.g.block_n % L_.g.cols != 0)
    fail(Status::kInternal, "w4a16 tuning has inconsistent block " +
                                std::to_string(L_.g.block_n) + " / cols " + std::to_string(L_.g.cols));
  // Offsets are int in the kernels: keep every index below 2^31.
  if (double(p.Kp / 8) * double(L_.g.Np) >= 2147483647.0)
    fail(Status::kInvalidShape, "int4 layer K=" + std::to_string(p.K) + " x N=" + std::to_string(p.N) +
                                    " is too large for 32-bit word indices");
  // Device layout: columns padded to Np (zero weights, unit scale), stored in column blocks.
  std::vector<uint32_t> qw = column_blocks(p.qw.data(), L_.Kp / 8, L_.N, L_.g.Np, L_.g.block_n);
  std::vector<uint16_t> scales = pad_columns<uint16_t>(p.scales.data(), L_.G, L_.N, L_.g.Np, 0x3C00);
  std::vector<uint8_t> zeros = pad_columns<uint8_t>(p.zeros.data(), L_.G, L_.N, L_.g.Np, 0);
  L_.qw = upload(qw.data(), qw.size() * 4);
  L_.scales = upload(scales.data(), scales.size() * 2);
  L_.zeros = upload(zeros.data(), zeros.size());
  L_.perm = upload(p.perm.data(), p.perm.size() * 4);
  L_.gstart = upload(p.gstart.data(), p.gstart.size() * 4);
  L_.wgroup = upload(p.wgroup.data(), p.wgroup.size() * 4);

  L_.identity_perm = !p.act_order;
  for (int64_t r = 0; r < L_.Kp && L_.identity_perm; ++r) L_.identity_perm = p.perm[size_t(r)] == (r < L_.K ? r : -1);
  // The tensor-core layout is a second copy of the weights, kept only where its variant can run.
  if (feature_mask(c.features()) & kFeatNvMmaF16) {
    FragLayout f = frag_layout(p);
    L_.tiles = f.tiles;
    L_.chunks = f.chunks;
    L_.qf = upload(f.qf.data(), f.qf.size() * 4);
    L_.sz = upload(f.sz.data(), f.sz.size() * 4);
    L_.wgroupf = upload(f.wgroup.data(), f.wgroup.size() * 4);
    L_.descf = upload(f.desc.data(), f.desc.size() * 4);
    // nv_wgmma's fp16 build rounds (q - z) * s to fp16 once per weight (|q - z| <= 16): safe only
    // where every product of a nonzero scale is a finite normal fp16.
    L_.scales_fp16_safe = std::all_of(p.scales.begin(), p.scales.end(), [](uint16_t h) {
      const float s = std::fabs(fp16_to_f32(h));
      return s == 0.0f || (s >= 0x1p-14f && s <= 4094.0f);
    });
  }
}

cl::Buffer IntLayerGemm::upload(const void* data, size_t bytes) {
  cl::Buffer b = c_.alloc(bytes, CL_MEM_READ_ONLY);
  c_.write(b, data, bytes);
  return b;
}

void IntLayerGemm::can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const {
  if (M < 1) fail(Status::kInvalidArgument, "M = " + std::to_string(M) + ": need at least one row of activations");
  if (double(M) * double(L_.Kp) >= 2147483647.0 || double(M) * double(L_.N) >= 2147483647.0)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " with K = " + std::to_string(L_.K) +
                                    ", N = " + std::to_string(L_.N) + " exceeds 32-bit element indices; split the batch");
  oputil::check_io_buffers(M, L_.K, L_.N, xt, yt, x_bytes, y_bytes);
  size_t scratch = size_t(M) * size_t(L_.Kp) * 4;
  if (scratch > c_.features().max_alloc)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " needs a " + std::to_string(scratch) +
                                    "-byte activation scratch, above the device's max allocation; split the batch");
}

const VariantRow& IntLayerGemm::choose(int64_t M, const std::string& variant) const {
  return select_variant(op_, c_.features(), M, variant);
}

OpEvents IntLayerGemm::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                           const W4A16RunOptions& opt) {
  W4A16Call call;
  static_cast<GemmIo&>(call) = GemmIo{&x, xt, &y, yt, M};
  call.opt = opt;
  can_implement(M, xt, yt, call.x_bytes(), call.y_bytes());
  const VariantRow& row = choose(M, opt.variant);
  const W4A16Launcher* l = find_variant(*launchers_, row.variant);
  if (!l) fail(Status::kInternal, std::string(op_) + " row '" + row.variant + "' has no launcher");
  l->can_implement(L_, call, c_.features()).raise_if_refused();
  OpEvents ev = l->enqueue(c_, L_, call);
  ev.row = &row;
  return ev;
}

}  // namespace clq
