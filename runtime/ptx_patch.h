// PTX rewriting for NVIDIA's OpenCL (docs/design.md, "Hopper from OpenCL"). The driver compiles
// OpenCL C for `.target sm_90`, where ptxas refuses wgmma, and OpenCL `__local` stops at 48 KiB.
// Its program binary is PTX text, so a kernel can leave marker comments in inline asm
// (`asm volatile("// CLQ_MMA %0 %1" : "+f"(d) : "r"(a))` survives into the PTX with the operand
// registers filled in), and the runtime rewrites the text: a new target, each marker replaced by
// real instructions, module-scope declarations (large `.shared` arrays) added; then reloads it
// with clCreateProgramWithBinary. Knows nothing of what the instructions compute.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace clq {

struct PtxPatch {
  std::string target;  // replaces the `.target sm_NN` line's target, e.g. "sm_90a"; "" keeps it
  // Marker name -> PTX text. In the text, {0}..{999} are the marker's operands in order (the PTX
  // registers inline asm substituted for %0..%15); lines are separated by '\n'.
  std::vector<std::pair<std::string, std::string>> markers;
  std::vector<std::string> module_decls;  // inserted after `.address_size`, e.g. ".shared .align 128 .b8 buf[65536];"
  // Markers that a kernel may leave out (a patch shared by a family of kernels, each using some);
  // every other marker must occur.
  std::vector<std::string> optional_markers;
  bool empty() const { return target.empty() && markers.empty() && module_decls.empty(); }
  // Canonical text of the patch: part of the program-cache key, so another patch is another program.
  std::string key() const;
};

// Applies `patch` to `ptx`. Throws BuildFailed naming the problem when the text has no `.target`
// (not PTX), a marker refers to an operand it was not given, or a declared marker never occurs.
std::string apply_ptx_patch(const std::string& ptx, const PtxPatch& patch);

}  // namespace clq
