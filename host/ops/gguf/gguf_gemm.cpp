// The gguf_gemm dispatcher and its two portable launchers (kernels_cl/gguf/gemv.cl, tiled.cl).
#include "host/ops/gguf/gguf_gemm.h"

#include <algorithm>

#include "host/ops/op_util.h"

namespace clq {

namespace {

std::string layout_defines(const GgufDeviceLayer& L, const GgufCall& io) {
  return oputil::io_defines(io.xt, io.yt) + " -DCODE_BITS=" + std::to_string(L.code_bits) +
         " -DGROUP=" + std::to_string(L.group);
}

// One work-item per column and up to 8 tokens.
class Gemv final : public GgufLauncher {
 public:
  Gemv() : GgufLauncher("gemv", {"gguf/gemv.cl"}) {}
  OpEvents enqueue(Context& c, GgufDeviceLayer& L, const GgufCall& io) const override {
    const int rows = oputil::gemv_rows(io.M, 8);
    const int64_t mblocks = (io.M + rows - 1) / rows, chunks = (L.K + 255) / 256;  // KCHUNK of gemv.cl
    // A CPU runs a work-group per core and needs no split; a GPU wants about 1024 work-items per
    // compute unit in flight, and N columns alone give far fewer.
    int64_t splits = 1;
    if (io.splits > 0) {
      splits = std::min<int64_t>(chunks, io.splits);
    } else if (!c.features().is_cpu) {
      const int64_t items = oputil::round_up(size_t(L.N), 64) * mblocks;
      splits = std::min<int64_t>(chunks, std::max<int64_t>(1, int64_t(c.features().compute_units) * 1024 / items));
    }
    const int64_t cps = (chunks + splits - 1) / splits;
    splits = (chunks + cps - 1) / cps;
    const std::string defs = layout_defines(L, io) + " -DGEMV_M=" + std::to_string(rows);
    cl::Kernel k = c.kernel("gguf/gemv.cl", "gguf_gemv", defs);
    cl::Kernel reduce;
    if (splits > 1) {
      oputil::grow_scratch(c, L.part, L.part_bytes, size_t(splits) * size_t(io.M) * size_t(L.N) * 4);
      reduce = c.kernel("gguf/gemv.cl", "gguf_splitk_reduce", defs);
    } else if (L.part_bytes == 0) {
      oputil::grow_scratch(c, L.part, L.part_bytes, 4);  // a valid (unused) argument
    }
    set_args(k, L.codes, L.so, *io.x, *io.y, L.part, cl_int(io.M), cl_int(L.N), cl_int(L.K), cl_int(cps),
             cl_int(splits == 1));
    OpEvents ev;
    oputil::enqueue(c, ev, k, cl::NDRange(oputil::round_up(size_t(L.N), 64), size_t(mblocks), size_t(splits)),
                    cl::NDRange(64, 1, 1),
                    "gguf_gemv (M=" + std::to_string(io.M) + ", splits=" + std::to_string(splits) + ")");
    if (splits > 1) oputil::enqueue_splitk_reduce(c, ev, reduce, L.part, *io.y, io.M, L.N, int(splits), "gguf_splitk_reduce");
    return ev;
  }
};

class Tiled final : public GgufLauncher {
 public:
  Tiled() : GgufLauncher("tiled", {"gguf/tiled.cl"}) {}
  OpEvents enqueue(Context& c, GgufDeviceLayer& L, const GgufCall& io) const override {
    cl::Kernel k = c.kernel("gguf/tiled.cl", "gguf_tiled", layout_defines(L, io));
    set_args(k, L.codes, L.so, *io.x, *io.y, cl_int(io.M), cl_int(L.N), cl_int(L.K));
    OpEvents ev;
    oputil::enqueue(c, ev, k, cl::NDRange((size_t(L.N) + 31) / 32 * 64, (size_t(io.M) + 31) / 32), cl::NDRange(64, 1),
                    "gguf_tiled (M=" + std::to_string(io.M) + ")");
    return ev;
  }
};

}  // namespace

const std::vector<const GgufLauncher*>& gguf_launchers() {
  static const Gemv gemv;
  static const Tiled tiled;
  static const std::vector<const GgufLauncher*> all = {&gemv, &tiled};
  return all;
}

GgufGemm::GgufGemm(Context& c, const GgufLinear& l) : c_(c) {
  if (!l.weight || !gguf_type_supported(l.type))
    fail(Status::kInvalidArgument, "GgufGemm: the layer was not validated (validate_gguf_linear)");
  L_.type = l.type;
  L_.N = l.N;
  L_.K = l.K;
  host_ = repack_gguf_affine(l);
  L_.code_bits = host_.code_bits;
  L_.group = host_.group;
  const size_t bytes = std::max(host_.codes.size() * 4, host_.so.size() * 4);
  if (bytes > c.features().max_alloc)
    fail(Status::kInvalidShape, "GGUF layer needs a " + std::to_string(bytes) +
                                    "-byte buffer, above the device's max allocation (" +
                                    std::to_string(c.features().max_alloc) + ")");
  if (l.type == uint32_t(GgmlType::kQ4_0)) w4_ = std::make_unique<W4A16Gemm>(c, repack_gguf_q4_0(l));
}

void GgufGemm::upload_affine() {
  if (uploaded_) return;
  L_.codes = c_.alloc(host_.codes.size() * 4, CL_MEM_READ_ONLY);
  L_.so = c_.alloc(host_.so.size() * 4, CL_MEM_READ_ONLY);
  c_.write(L_.codes, host_.codes.data(), host_.codes.size() * 4);
  c_.write(L_.so, host_.so.data(), host_.so.size() * 4);
  host_ = GgufAffine{};
  uploaded_ = true;
}

void GgufGemm::can_implement(int64_t M, DType xt, DType yt, size_t x_bytes, size_t y_bytes) const {
  if (M < 1) fail(Status::kInvalidArgument, "M = " + std::to_string(M) + ": need at least one row of activations");
  if (double(M) * double(L_.K) >= 2147483647.0 || double(M) * double(L_.N) >= 2147483647.0)
    fail(Status::kInvalidShape, "M = " + std::to_string(M) + " with K = " + std::to_string(L_.K) + ", N = " +
                                    std::to_string(L_.N) + " exceeds 32-bit element indices; split the batch");
  oputil::check_io_buffers(M, L_.K, L_.N, xt, yt, x_bytes, y_bytes);
  if (w4_) w4_->can_implement(M, xt, yt, x_bytes, y_bytes);
}

const VariantRow& GgufGemm::choose(int64_t M, const GgufRunOptions& opt) const {
  if (via_w4a16(opt)) return w4_->choose(M, opt.variant);
  return select_variant("gguf_gemm", c_.features(), M, opt.variant);
}

OpEvents GgufGemm::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t M,
                       const GgufRunOptions& opt) {
  GgufCall io;
  static_cast<GemmIo&>(io) = GemmIo{&x, xt, &y, yt, M};
  io.splits = opt.splits;
  can_implement(M, xt, yt, io.x_bytes(), io.y_bytes());
  if (via_w4a16(opt)) {
    W4A16RunOptions w;
    w.variant = opt.variant;
    return w4_->run(x, xt, y, yt, M, w);
  }
  const VariantRow& row = choose(M, opt);
  const GgufLauncher* l = find_variant(gguf_launchers(), row.variant);
  if (!l) fail(Status::kInternal, std::string("gguf_gemm row '") + row.variant + "' has no launcher");
  upload_affine();
  OpEvents ev = l->enqueue(c_, L_, io);
  ev.row = &row;
  return ev;
}

}  // namespace clq
