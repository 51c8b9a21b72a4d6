#include "host/ops/quantize/weight_quant.h"

#include <vector>

#include "host/caps/caps.h"
#include "host/ops/op_util.h"
#include "runtime/status.h"

namespace clq {

OpEvents WeightQuantizer::run(const DenseWeight& w, const QuantSpec& spec, QuantizedWeight* out) {
  check_quant_input(w, spec);
  const VariantRow& row = select_variant("weight_quant", c_.features(), 1);
  QuantizedWeight q;
  q.spec = spec;
  q.N = w.N;
  q.K = w.K;
  const size_t count = size_t(w.N * w.K);
  const std::string dt = "-DW_DTYPE=" + std::to_string(oputil::dtype_code(w.dtype));
  cl::Buffer dw = c_.alloc(count * dtype_size(w.dtype), CL_MEM_READ_ONLY);
  cl::Buffer codes = c_.alloc(count);
  c_.write(dw, w.data, count * dtype_size(w.dtype));
  auto poison = [&](const cl::Buffer& b, size_t bytes) {
    if (!poison_) return;
    const std::vector<uint8_t> ff(bytes, 0xFF);
    c_.write(b, ff.data(), bytes);
  };
  poison(codes, count);
  OpEvents ev;
  if (spec.is_int()) {
    q.group = spec.group_size == -1 ? w.K : spec.group_size;
    q.G = (w.K + q.group - 1) / q.group;
    // G * 64 work-items along dimension 0 must fit size_t and the kernel's int group index.
    if (q.G > (int64_t(1) << 24))
      fail(Status::kInvalidShape, "weight '" + w.name + "' has " + std::to_string(q.G) + " groups per row; at most 2^24");
    const size_t groups = size_t(w.N * q.G);
    cl::Buffer scales = c_.alloc(groups * 2), zeros = c_.alloc(spec.symmetric ? 1 : groups);
    poison(scales, groups * 2);
    if (!spec.symmetric) poison(zeros, groups);
    cl::Kernel k = c_.kernel("quantize/weight_quant.cl", "weight_quant_int",
                             dt + " -DBITS=" + std::to_string(spec.bits()) + " -DSYM=" + (spec.symmetric ? "1" : "0"));
    set_args(k, dw, codes, scales, zeros, cl_int(w.N), cl_int(w.K), cl_int(q.G), cl_int(q.group));
    oputil::enqueue(c_, ev, k, cl::NDRange(size_t(q.G) * 64, size_t(w.N)), cl::NDRange(64, 1),
                    std::string("weight_quant_int (") + quant_method_name(spec.method) + ")");
    c_.finish();
    q.scales16.resize(groups);
    c_.read(scales, q.scales16.data(), groups * 2);
    if (!spec.symmetric) {
      q.zeros.resize(groups);
      c_.read(zeros, q.zeros.data(), groups);
    }
  } else {
    q.group = 128;
    q.G = (w.K + 127) / 128;
    q.Nb = (w.N + 127) / 128;
    const size_t blocks = size_t(q.Nb * q.G);
    cl::Buffer scales = c_.alloc(blocks * 4);
    poison(scales, blocks * 4);
    cl::Kernel k = c_.kernel("quantize/weight_quant.cl", "weight_quant_fp8_block", dt);
    set_args(k, dw, codes, scales, cl_int(w.N), cl_int(w.K));
    oputil::enqueue(c_, ev, k, cl::NDRange(size_t(q.G) * 256, size_t(q.Nb)), cl::NDRange(256, 1),
                    "weight_quant_fp8_block");
    c_.finish();
    q.scales32.resize(blocks);
    c_.read(scales, q.scales32.data(), blocks * 4);
  }
  q.codes.resize(count);
  c_.read(codes, q.codes.data(), count);
  ev.row = &row;
  check_quant_result(q, w.name);
  *out = std::move(q);
  return ev;
}

}  // namespace clq
