// WeightQuantizer: online quantization of one dense weight matrix on the device (op
// `weight_quant`, kernels_cl/quantize/weight_quant.cl): integer group codes with fp16 scales
// (and zero points) or block-FP8 codes with fp32 block scales, bit-identical to the host twin
// (host/reference/quantize_reference.h). Every rule (shape, spec, finite weights) is checked
// before anything is enqueued; a scale that overflows fp16 is refused after the read back.
#pragma once
#include "host/formats/quantize.h"
#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq {

class WeightQuantizer {
 public:
  // poison: fill the device's output buffers with 0xFF before the launch (tests: an element the
  // kernel leaves unwritten then differs from the host twin).
  explicit WeightQuantizer(Context& c, bool poison = false) : c_(c), poison_(poison) {}
  // Uploads w, quantizes it on the device and reads the result back into *out.
  OpEvents run(const DenseWeight& w, const QuantSpec& spec, QuantizedWeight* out);

 private:
  Context& c_;
  bool poison_ = false;
};

}  // namespace clq
