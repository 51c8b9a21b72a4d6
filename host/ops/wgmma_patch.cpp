#include "host/ops/wgmma_patch.h"

#include <string>

#include "runtime/status.h"

namespace clq {

PtxPatch wgmma_patch(size_t smem_bytes, WgmmaOperands operands) {
  if (smem_bytes == 0 || smem_bytes > kMaxWgmmaSmem || smem_bytes % 1024)
    fail(Status::kInternal, "wgmma stage array of " + std::to_string(smem_bytes) +
                                " bytes: needs a positive multiple of 1024 up to " + std::to_string(kMaxWgmmaSmem));
  PtxPatch p;
  p.target = "sm_90a";
  p.markers = {
      {"CLQ_WG_SMEM_BASE", "mov.u32 {0}, clq_wg_smem;"},
      {"CLQ_WG_PROXY", "fence.proxy.async.shared::cta;"},
      {"CLQ_WG_FENCE", "wgmma.fence.sync.aligned;"},
      {"CLQ_WG_COMMIT", "wgmma.commit_group.sync.aligned;"},
      {"CLQ_WG_WAIT0", "wgmma.wait_group.sync.aligned 0;"},
      {"CLQ_WG_WAIT1", "wgmma.wait_group.sync.aligned 1;"},
  };
  const std::string regs = "{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11}, {12}, {13}, {14}, {15}, {16}, {17}, {18}, {19}, {20}, {21}, {22}, {23}, {24}, {25}, {26}, {27}, {28}, {29}, {30}, {31}, {32}, {33}, {34}, {35}, {36}, {37}, {38}, {39}, {40}, {41}, {42}, {43}, {44}, {45}, {46}, {47}, {48}, {49}, {50}, {51}, {52}, {53}, {54}, {55}, {56}, {57}, {58}, {59}, {60}, {61}, {62}, {63}";
  // scale-d is a predicate: a register operand set by setp, so one marker serves both the first
  // k-step of a sum (fresh) and the rest.
  const std::string pred = "{\n.reg .pred %clq_p;\nsetp.ne.b32 %clq_p, {66}, 0;\n";
  if (operands == WgmmaOperands::kE4m3)
    p.markers.push_back({"CLQ_WG_MMA_E4M3_N128", pred + "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 {" +
                                                     regs + "}, {64}, {65}, %clq_p, 1, 1;\n}"});
  else if (operands == WgmmaOperands::kS8)  // integer wgmma has no input scales
    p.markers.push_back(
        {"CLQ_WG_MMA_S8_N128", pred + "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 {" + regs + "}, {64}, {65}, %clq_p;\n}"});
  else {
    // A in four registers, B K-major in .shared (trans-b 0); the predicate is the last operand.
    // A kernel uses the n128 or the n256 shape; the n256 one also trades registers between its
    // warpgroups (setmaxnreg: 128 x 56 plus 256 x 224 or 384 x 152 is the 65536 of one SM).
    const std::string t = operands == WgmmaOperands::kBf16Rs ? "bf16" : "f16";
    auto rs = [&](int n) {
      std::string r;
      for (int i = 0; i < n / 2; ++i) r += (i ? ", {" : "{") + std::to_string(i) + "}";
      const int a0 = n / 2;
      auto op = [&](int k) { return "{" + std::to_string(a0 + k) + "}"; };
      return "{\n.reg .pred %clq_p;\nsetp.ne.b32 %clq_p, " + op(5) + ", 0;\nwgmma.mma_async.sync.aligned.m64n" +
             std::to_string(n) + "k16.f32." + t + "." + t + " {" + r + "}, {" + op(0) + ", " + op(1) + ", " + op(2) +
             ", " + op(3) + "}, " + op(4) + ", %clq_p, 1, 1, 0;\n}";
    };
    p.markers.push_back({"CLQ_WG_MMA_RS_N128", rs(128)});
    p.markers.push_back({"CLQ_WG_MMA_RS_N256", rs(256)});
    p.markers.push_back({"CLQ_WG_REGS_DEC", "setmaxnreg.dec.sync.aligned.u32 56;"});
    p.markers.push_back({"CLQ_WG_REGS_INC_224", "setmaxnreg.inc.sync.aligned.u32 224;"});
    p.markers.push_back({"CLQ_WG_REGS_INC_152", "setmaxnreg.inc.sync.aligned.u32 152;"});
    p.optional_markers = {"CLQ_WG_MMA_RS_N128", "CLQ_WG_MMA_RS_N256", "CLQ_WG_REGS_DEC", "CLQ_WG_REGS_INC_224",
                          "CLQ_WG_REGS_INC_152"};
  }
  // The knock-out builds (CLQ_NV_WGMMA=ko=3, 6) leave the proxy fence out.
  // Only the kernels that keep one group in flight across a step wait for "all but one".
  for (const char* m : {"CLQ_WG_PROXY", "CLQ_WG_WAIT1"}) p.optional_markers.push_back(m);
  p.module_decls = {".shared .align 1024 .b8 clq_wg_smem[" + std::to_string(smem_bytes) + "];"};
  return p;
}

}  // namespace clq
