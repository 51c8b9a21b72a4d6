#include "host/ops/w8a8_int8/w8a8_int8_gemm.h"

#include "host/caps/caps.h"
#include "host/ops/layout.h"
#include "host/ops/op_util.h"
#include "runtime/status.h"

namespace clq {

using oputil::i2s;

Int8Weights int8_weights(const W8Packed& p) {
  if (p.G != 1)
    fail(Status::kInvalidArgument, "W8A8 int8 needs one scale per output channel, but the layer has " + i2s(p.G) +
                                       " groups along K");
  if (p.act_order) fail(Status::kInvalidArgument, "W8A8 int8 takes no act-order (g_idx) layer");
  Int8Weights w;
  w.K = p.K;
  w.N = p.N;
  w.w.resize(size_t(p.N * p.K));
  w.sw.resize(size_t(p.N));
  for (int64_t n = 0; n < p.N; ++n) {
    if (p.zeros[size_t(n)] != 128)
      fail(Status::kInvalidArgument, "W8A8 int8 weights must be symmetric, but column " + i2s(n) + " has zero point " +
                                         i2s(int64_t(p.zeros[size_t(n)]) - 128) + " (signed)");
    w.sw[size_t(n)] = p.scales[size_t(n)];
    for (int64_t k = 0; k < p.K; ++k)
      w.w[size_t(n * p.K + k)] = int8_t(int((p.qw[size_t(k / 4 * p.N + n)] >> (8 * (k % 4))) & 0xFFu) - 128);
  }
  return w;
}

W8A8Int8Gemm::W8A8Int8Gemm(Context& c, const W8Packed& p) : c_(c), w_(int8_weights(p)) {
  if (p.K > kW8A8MaxK)
    fail(Status::kInvalidShape, "K = " + i2s(p.K) + " exceeds " + i2s(kW8A8MaxK) +
                                    ": the int32 sums of W8A8 int8 could overflow");
  L_.K = p.K;
  L_.N = p.N;
  L_.w = &w_;
  const int64_t Kw = p.Kp / 4;
  L_.Kw = Kw;
  // Signed bytes: the stored code q + 128 with its top bit flipped is the two's complement q.
  std::vector<uint32_t> qs(p.qw.size());
  for (size_t i = 0; i < qs.size(); ++i) qs[i] = p.qw[i] ^ 0x80808080u;
  for (int64_t w = p.K / 4; w < Kw; ++w)  // padding words (K is a multiple of 4) hold 0
    for (int64_t n = 0; n < p.N; ++n) qs[size_t(w * p.N + n)] = 0u;
  const int64_t block_n = c.features().is_cpu ? 16 : p.N;
  L_.block_n = block_n;
  const int64_t Np = (p.N + block_n - 1) / block_n * block_n;
  if (double(Kw) * double(Np) >= 2147483647.0)
    fail(Status::kInvalidShape, "int8 layer K=" + i2s(p.K) + " x N=" + i2s(p.N) + " is too large for 32-bit indices");
  std::vector<uint32_t> blocks = column_blocks(qs.data(), Kw, p.N, Np, block_n);
  L_.qw = c.alloc(blocks.size() * 4, CL_MEM_READ_ONLY);
  c.write(L_.qw, blocks.data(), blocks.size() * 4);
  L_.sw = c.alloc(w_.sw.size() * 4, CL_MEM_READ_ONLY);
  c.write(L_.sw, w_.sw.data(), w_.sw.size() * 4);
}

void W8A8Int8Gemm::can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const {
  if (M < 1) fail(Status::kInvalidArgument, "M = " + i2s(M) + ": need at least one row of activations");
  if (double(M) * double(L_.Kw) >= 2147483647.0 || double(M) * double(w_.N) >= 2147483647.0 ||
      double(M) * double(w_.K) >= 2147483647.0)
    fail(Status::kInvalidShape, "M = " + i2s(M) + " with K = " + i2s(w_.K) + ", N = " + i2s(w_.N) +
                                    " exceeds 32-bit element indices; split the batch");
  oputil::check_io_buffers(M, w_.K, w_.N, xt, yt, x_bytes, y_bytes);
}

OpEvents W8A8Int8Gemm::quantize(const cl::Buffer& x, DType xt, int64_t M, int64_t row_words) {
  if (M < 1) fail(Status::kInvalidArgument, "M = " + i2s(M) + ": need at least one row of activations");
  if (row_words == 0) row_words = L_.Kw;
  if (row_words < (w_.K + 3) / 4)
    fail(Status::kInternal, "activation code rows of " + i2s(row_words) + " words cannot hold K = " + i2s(w_.K));
  oputil::check_io_buffers(M, w_.K, 0, xt, xt, GemmIo::buffer_bytes(x), 0);
  oputil::grow_scratch(c_, codes_, codes_bytes_, size_t(M * row_words) * 4);
  oputil::grow_scratch(c_, scales_, scales_bytes_, size_t(M) * 4);
  // A row per work-group: 64 work-items on a CPU, 256 on a GPU, where a decode row alone is the
  // whole launch.
  const size_t wg = c_.features().is_cpu ? 64 : 256;
  cl::Kernel k = c_.kernel("w8a8_int8/quant.cl", "w8a8_int8_quant", oputil::io_defines(xt, xt) + " -DWG=" + std::to_string(wg));
  set_args(k, x, codes_, scales_, cl_int(M), cl_int(w_.K), cl_int(row_words));
  OpEvents ev;
  oputil::enqueue(c_, ev, k, cl::NDRange(size_t(M) * wg), cl::NDRange(wg), "w8a8_int8_quant");
  ev.row = &select_variant("w8a8_int8_quant", c_.features(), M);
  M_ = M;
  row_words_ = row_words;
  return ev;
}

void W8A8Int8Gemm::read_act(std::vector<int8_t>* codes, std::vector<float>* scales) const {
  std::vector<uint32_t> words(size_t(M_ * row_words_));
  c_.read(codes_, words.data(), words.size() * 4);
  codes->assign(size_t(M_ * w_.K), 0);
  for (int64_t m = 0; m < M_; ++m)
    for (int64_t k = 0; k < w_.K; ++k)
      (*codes)[size_t(m * w_.K + k)] = int8_t((words[size_t(m * row_words_ + k / 4)] >> (8 * (k % 4))) & 0xFFu);
  scales->resize(size_t(M_));
  c_.read(scales_, scales->data(), size_t(M_) * 4);
}

OpEvents W8A8Int8Gemm::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                           const W8A8Int8RunOptions& opt) {
  can_implement(M, xt, yt, GemmIo::buffer_bytes(x), GemmIo::buffer_bytes(y));
  if (opt.splits < 0) fail(Status::kInvalidArgument, "splits = " + i2s(opt.splits) + ": must be 0 (automatic) or more");
  const VariantRow& row = select_variant(kOp, c_.features(), M, opt.variant);
  const W8A8Int8Launcher* l = find_variant(w8a8_int8_launchers(), row.variant);
  if (!l) fail(Status::kInternal, std::string("w8a8_int8_gemm row '") + row.variant + "' has no launcher");
  W8A8Int8Call call;
  static_cast<GemmIo&>(call) = GemmIo{&x, xt, &y, yt, M};
  call.splits = opt.splits;
  l->can_implement(L_, call, c_.features()).raise_if_refused();
  OpEvents ev = quantize(x, xt, M, l->code_words(L_));
  ev.append(l->enqueue(c_, L_, call, codes_, scales_));
  ev.row = &row;
  return ev;
}

}  // namespace clq
