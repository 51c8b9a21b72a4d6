// Every launcher of every op, for find_launcher and the tests that hold the capability table and
// the launchers to each other. The single-kernel ops (conversions, FP8 activation quantization, weight quantization,
// MoE routing/alignment/expert GEMMs) have one variant each; their entries name the files their
// op code builds.
#include <initializer_list>

#include "host/caps/caps.h"
#include "host/ops/fp8/fp8_launcher.h"
#include "host/ops/gguf/gguf_gemm.h"
#include "host/ops/launcher.h"
#include "host/ops/moe/moe_launcher.h"
#include "host/ops/w4a16/w4a16_launcher.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/ops/w8a8_int8/w8a8_int8_launcher.h"

namespace clq {

namespace {
class FixedKernels final : public Launcher {
 public:
  FixedKernels(std::initializer_list<std::string> ops, const char* variant, std::initializer_list<std::string> files)
      : Launcher(variant, files), ops_(ops) {}
  std::vector<std::string> ops() const override { return ops_; }

 private:
  std::vector<std::string> ops_;
};
}  // namespace

const std::vector<const Launcher*>& all_launchers() {
  static const FixedKernels convert({"convert"}, "portable", {"convert/convert.cl"});
  static const FixedKernels quant({"fp8_quant"}, "portable", {"fp8/quant.cl"});
  static const FixedKernels routing({"moe_routing"}, "portable", {"moe/topk.cl"});
  static const FixedKernels align({"moe_align"}, "portable", {"moe/align.cl"});
  static const FixedKernels moe_gemm({"moe_gemm"}, "portable", {"moe/general.cl"});
  static const FixedKernels moe_fp8({"moe_gemm_fp8"}, "emulated", {"moe/general.cl"});
  static const FixedKernels moe_int8({"moe_gemm_int8"}, "portable", {"moe/general.cl"});
  static const FixedKernels w4a8({"w4a8_gemm"}, "emulated", {"fp8/quant.cl"});  // then the w4a16 launchers
  static const FixedKernels int8_quant({"w8a8_int8_quant"}, "portable", {"w8a8_int8/quant.cl"});
  static const FixedKernels weight_quant({"weight_quant"}, "portable", {"quantize/weight_quant.cl"});
  // Built once: ops look their rows' kernel files up on every call.
  static const std::vector<const Launcher*> all = [] {
    std::vector<const Launcher*> v = {&convert, &quant, &routing, &align, &moe_gemm, &moe_fp8, &moe_int8, &int8_quant, &w4a8, &weight_quant};
    for (auto* l : w4a16_launchers()) v.push_back(l);
    for (auto* l : w8a16_int8_launchers()) v.push_back(l);
    for (auto* l : fp8_launchers()) v.push_back(l);
    for (auto* l : w8a8_int8_launchers()) v.push_back(l);
    for (auto* l : gguf_launchers()) v.push_back(l);
    for (auto* l : moe_launchers()) v.push_back(l);
    return v;
  }();
  return all;
}

const Launcher* find_launcher(const std::string& op, const std::string& variant) {
  for (auto* l : all_launchers()) {
    if (variant != l->variant()) continue;
    for (auto& o : l->ops())
      if (o == op) return l;
  }
  return nullptr;
}

const std::string& row_kernel_file(const VariantRow& row) {
  const Launcher* l = find_launcher(row.op, row.variant);
  if (!l || l->kernel_files().empty())
    fail(Status::kInternal, std::string("capability-table row ") + row.op + "/" + row.variant + " has no launcher");
  return l->kernel_files().front();
}

}  // namespace clq
