#include "host/ops/moe/moe_block.h"

#include <cmath>

#include "host/ops/op_util.h"
#include "runtime/status.h"

namespace clq {

using oputil::dtype_code;
using oputil::i2s;

MoeBlock::MoeBlock(Context& c, const MoeCheckpoint& m) : c_(c), routed_(c, m) {
  if (!m.shared) return;
  shared_ = std::make_unique<FusedMoe>(c, *m.shared);
  if (m.shared_gate) {
    gated_ = true;
    const StTensor& g = *m.shared_gate;
    const DType gt = g.dtype == StDType::kF32 ? DType::kF32 : g.dtype == StDType::kF16 ? DType::kF16 : DType::kBF16;
    std::vector<float> w(size_t(m.H));
    for (size_t h = 0; h < w.size(); ++h) w[h] = load_as_f32(g.data, h, gt);
    gate_ = c_.alloc(w.size() * 4, CL_MEM_READ_ONLY);
    c_.write(gate_, w.data(), w.size() * 4);
  } else {
    gate_ = c_.alloc(4, CL_MEM_READ_ONLY);  // an argument GATED 0 never reads
  }
}

MoeRunOptions MoeBlock::shared_options(const MoeRunOptions& o) const {
  // One expert: no expert map, and the block size its own (T rows of one expert).
  MoeRunOptions s;
  s.splits = o.splits;
  s.decode = o.decode;
  return s;
}

void MoeBlock::can_implement(int64_t T, DType xt, DType yt, size_t x_bytes, size_t y_bytes, const MoeRouting& r,
                             const MoeRunOptions& o) const {
  routed_.can_implement(T, xt, yt, x_bytes, y_bytes, r, o);
  if (!shared_) return;
  MoeRouting one;
  one.top_k = 1;
  try {
    shared_->can_implement(T, xt, DType::kF32, x_bytes, size_t(T * H()) * 4, one, shared_options(o));
  } catch (const Error& e) {
    fail(e.status(), std::string("shared experts: ") + e.what());
  }
}

void MoeBlock::add_shared(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T,
                          const MoeRunOptions& o, OpEvents* ev) {
  // The shared MLP's routing, with no host write (a blocking one would wait for the routed part):
  // logits of zero for its one expert, whose softmax top-1 weight is exactly 1.
  if (oputil::grow_scratch(c_, zero_logits_, zero_logits_b_, size_t(T) * 4))
    c_.fill_u32(zero_logits_, 0u, zero_logits_b_);
  MoeRouting one;
  one.top_k = 1;
  ev->append(shared_->run(x, xt, ys_, DType::kF32, T, one, shared_options(o), &zero_logits_));
  cl::Kernel k = c_.kernel(
      "moe/shared.cl", "moe_shared_combine",
      "-DIN_DTYPE=" + i2s(dtype_code(xt)) + " -DOUT_DTYPE=" + i2s(dtype_code(yt)) + " -DGATED=" + (gated_ ? "1" : "0"));
  set_args(k, yr_, ys_, x, gate_, y, cl_int(H()));
  oputil::enqueue(c_, *ev, k, cl::NDRange(size_t(T) * 64), cl::NDRange(64), "moe_shared_combine");
}

OpEvents MoeBlock::run(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T, const MoeRouting& r,
                       const MoeRunOptions& o, const cl::Buffer* logits) {
  if (!shared_) return routed_.run(x, xt, y, yt, T, r, o, logits);
  size_t xb = 0, yb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  y.getInfo(CL_MEM_SIZE, &yb);
  can_implement(T, xt, yt, xb, yb, r, o);  // before anything is enqueued, the shared part too
  oputil::grow_scratch(c_, yr_, yr_b_, size_t(T * H()) * 4);
  oputil::grow_scratch(c_, ys_, ys_b_, size_t(T * H()) * 4);
  OpEvents ev = routed_.run(x, xt, yr_, DType::kF32, T, r, o, logits);
  add_shared(x, xt, y, yt, T, o, &ev);
  return ev;
}

OpEvents MoeBlock::run_routed(const cl::Buffer& x, DType xt, const cl::Buffer& y, DType yt, int64_t T,
                              const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                              const MoeRunOptions& o) {
  if (!shared_) return routed_.run_routed(x, xt, y, yt, T, ids, weights, top_k, o);
  size_t xb = 0, yb = 0;
  x.getInfo(CL_MEM_SIZE, &xb);
  y.getInfo(CL_MEM_SIZE, &yb);
  MoeRouting r;
  r.top_k = top_k;
  can_implement(T, xt, yt, xb, yb, r, o);
  oputil::grow_scratch(c_, yr_, yr_b_, size_t(T * H()) * 4);
  oputil::grow_scratch(c_, ys_, ys_b_, size_t(T * H()) * 4);
  OpEvents ev = routed_.run_routed(x, xt, yr_, DType::kF32, T, ids, weights, top_k, o);
  add_shared(x, xt, y, yt, T, o, &ev);
  return ev;
}

std::vector<double> moe_block_reference(const MoeCheckpoint& m, const void* x, DType xt, int64_t T,
                                        const std::vector<int>& ids, const std::vector<float>& weights, int top_k,
                                        const std::vector<int>& expert_map) {
  std::vector<double> out = moe_reference(m, x, xt, T, ids, weights, top_k, expert_map);
  if (!m.shared) return out;
  const int64_t H = m.H;
  const std::vector<double> s =
      moe_reference(*m.shared, x, xt, T, std::vector<int>(size_t(T), 0), std::vector<float>(size_t(T), 1.0f), 1);
  DType gt = DType::kF32;
  if (m.shared_gate)
    gt = m.shared_gate->dtype == StDType::kF16    ? DType::kF16
         : m.shared_gate->dtype == StDType::kBF16 ? DType::kBF16
                                                  : DType::kF32;
  for (int64_t t = 0; t < T; ++t) {
    double g = 1.0;
    if (m.shared_gate) {
      double dot = 0;
      for (int64_t h = 0; h < H; ++h)
        dot += double(load_as_f32(x, size_t(t * H + h), xt)) * double(load_as_f32(m.shared_gate->data, size_t(h), gt));
      g = 1.0 / (1.0 + std::exp(-dot));
    }
    for (int64_t h = 0; h < H; ++h) out[size_t(t * H + h)] += g * s[size_t(t * H + h)];
  }
  return out;
}

}  // namespace clq
