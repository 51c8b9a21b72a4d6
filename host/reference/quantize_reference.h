// Host twin of the weight quantizer (kernels_cl/quantize/weight_quant.cl): the same rules in
// plain C++ (IEEE fp32 division is correctly rounded on the host, so it equals the kernel's
// integer long division; maxima over |w| equal the kernel's integer maxima), so the device op's
// codes, scales and zero points must equal these bit for bit (tests/test_quantize.cpp).
#pragma once
#include "host/formats/quantize.h"

namespace clq {

// Quantizes w after check_quant_input; the scale check (check_quant_result) is the caller's.
QuantizedWeight quantize_weight_host(const DenseWeight& w, const QuantSpec& spec);

}  // namespace clq
