// The W8A8 int8 launchers' shared face: the device-resident layer, one call, and the interface
// each variant implements (portable.cpp, nv_wgmma_s8.cpp next to this file). The op quantizes the
// activations first (w8a8_int8/quant.cl) into rows of the length the chosen launcher reads.
#pragma once
#include <cstdint>
#include <vector>

#include "host/ops/launcher.h"
#include "host/ops/op_events.h"
#include "host/reference/w8a8_int8_reference.h"
#include "runtime/context.h"

namespace clq {

struct W8A8Int8DeviceLayer {
  int64_t K = 0, N = 0;
  const Int8Weights* w = nullptr;  // the host copy, [N][K] signed codes and fp32 scales
  cl::Buffer sw;                   // [N] fp32
  // portable: signed words 4 along K, [Np / block_n][Kw][block_n]
  cl::Buffer qw;
  int64_t Kw = 0, block_n = 0;
  // nv_wgmma_s8: [Npw][Kp] bytes, K contiguous, Npw and Kp multiples of 128, zero padded; laid
  // out from the host copy on first use and kept.
  cl::Buffer rows;
  bool have_rows = false;
  cl::Buffer part;  // split-K partials, grown on demand
  size_t part_bytes = 0;
};

struct W8A8Int8Call : GemmIo {
  int splits = 0;  // split-K ranges (0: the launcher decides)
};

class W8A8Int8Launcher : public Launcher {
 public:
  using Launcher::Launcher;
  std::vector<std::string> ops() const override { return {"w8a8_int8_gemm"}; }
  virtual Check can_implement(const W8A8Int8DeviceLayer& L, const W8A8Int8Call& a, const DeviceFeatures& f) const {
    return Check::pass();
  }
  // 32-bit words per row of activation codes this variant reads (the quantizer zero-pads rows).
  virtual int64_t code_words(const W8A8Int8DeviceLayer& L) const = 0;
  // codes: [M][code_words] words, scales: [M] fp32, both already enqueued by the op.
  virtual OpEvents enqueue(Context& c, W8A8Int8DeviceLayer& L, const W8A8Int8Call& a, const cl::Buffer& codes,
                           const cl::Buffer& scales) const = 0;
};

const std::vector<const W8A8Int8Launcher*>& w8a8_int8_launchers();

}  // namespace clq
