#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"

#include "host/caps/tuning.h"
#include "host/ops/layout.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "runtime/status.h"

namespace clq {

double W8A16Int8Problem::bytes() const {
  const int64_t G = group_size == -1 ? 1 : (K + group_size - 1) / group_size;
  return double(K) * double(N) + double(G) * double(N) * 6 + double(M) * double(K + N) * double(dtype_size(act));
}

W8A16Int8Gemm::W8A16Int8Gemm(Context& c, const W8Packed& p)
    : IntLayerGemm(c, kOp, w8a16_int8_launchers()) {
  L_.bits = 8;
  L_.K = p.K;
  L_.N = p.N;
  L_.Kp = p.Kp;
  L_.G = p.G;
  if (p.Kp % kW4RowAlign || p.qw.size() != size_t(p.Kp / 4 * p.N) || p.scales.size() != size_t(p.G * p.N) ||
      p.zeros.size() != size_t(p.G * p.N) || p.perm.size() != size_t(p.Kp) || p.gstart.size() != size_t(p.G + 1) ||
      p.wgroup.size() != size_t(p.Kp / 4))
    fail(Status::kInvalidArgument, "W8Packed arrays disagree with K=" + std::to_string(p.K) +
                                       " N=" + std::to_string(p.N) + " Kp=" + std::to_string(p.Kp) +
                                       " G=" + std::to_string(p.G) + " (use repack_w8)");
  L_.g = gemv_geometry(c.features(), L_.N);
  if (double(p.Kp / 4) * double(L_.g.Np) >= 2147483647.0)
    fail(Status::kInvalidShape, "int8 layer K=" + std::to_string(p.K) + " x N=" + std::to_string(p.N) +
                                    " is too large for 32-bit word indices");
  const std::vector<uint32_t> qw = column_blocks(p.qw.data(), L_.Kp / 4, L_.N, L_.g.Np, L_.g.block_n);
  const std::vector<float> scales = pad_columns<float>(p.scales.data(), L_.G, L_.N, L_.g.Np, 1.0f);
  const std::vector<uint16_t> zeros = pad_columns<uint16_t>(p.zeros.data(), L_.G, L_.N, L_.g.Np, 0);
  L_.qw = upload(qw.data(), qw.size() * 4);
  L_.scales = upload(scales.data(), scales.size() * 4);
  L_.zeros = upload(zeros.data(), zeros.size() * 2);
  L_.perm = upload(p.perm.data(), p.perm.size() * 4);
  L_.gstart = upload(p.gstart.data(), p.gstart.size() * 4);
  L_.wgroup = upload(p.wgroup.data(), p.wgroup.size() * 4);
  L_.identity_perm = !p.act_order;
}

std::unique_ptr<IntLayerGemm> make_int_layer_gemm(Context& c, const W4Checkpoint& ck) {
  if (ck.bits == 8) return std::make_unique<W8A16Int8Gemm>(c, repack_w8(ck));
  return std::make_unique<W4A16Gemm>(c, repack_w4(ck));
}

const char* int_layer_op(const W4Checkpoint& ck) { return ck.bits == 8 ? W8A16Int8Gemm::kOp : W4A16Gemm::kOp; }

}  // namespace clq
