// A kernel variant as one unit (DESIGN.md, "The capability table"). The capability table says
// when a variant may run (op, variant, features, preference, M range); its launcher says how:
// it owns the kernel files, entry names, -D options, argument order, launch geometry and scratch
// of that variant. An op (W4A16Gemm, Fp8Gemm, ...) validates its call once, picks the table row,
// asks that row's launcher whether it can take the problem (can_implement, a Check naming the
// rule) and lets it enqueue.
//
// Adding a variant: one .cl under kernels_cl/<op family>/, one launcher class in
// host/ops/<op family>/<variant>.cpp added to that family's launcher list, one table row in
// host/caps/caps.cpp (plus a Feature bit if it needs a new probe). docs/add-a-variant.md walks it.
#pragma once
#include <string>
#include <vector>

#include "runtime/status.h"

namespace clq {

// What can_implement answers: ok, or the status and a message that names the rule and values.
struct Check {
  Status status = Status::kSuccess;
  std::string message;
  bool ok() const { return status == Status::kSuccess; }
  static Check pass() { return {}; }
  static Check refuse(Status s, std::string why) { return {s, std::move(why)}; }
  // Throws the refusal as clq::Error (ops call this before enqueueing anything).
  void raise_if_refused() const {
    if (!ok()) fail(status, message);
  }
};

// Every launcher shares this face, so tests and `clquant caps` can list what a variant builds.
class Launcher {
 public:
  Launcher(const char* variant, std::vector<std::string> kernel_files)
      : variant_(variant), files_(std::move(kernel_files)) {}
  virtual ~Launcher() = default;
  // Capability-table ops it serves (one kernel family may serve several, as FP8's does).
  virtual std::vector<std::string> ops() const = 0;
  const char* variant() const { return variant_; }  // capability-table variant, e.g. "gemv"
  // Kernel files (under kernels_cl/) this launcher builds, main kernel first.
  const std::vector<std::string>& kernel_files() const { return files_; }

 private:
  const char* variant_;
  std::vector<std::string> files_;
};

// The launcher of `variant` in one op family's list, or nullptr.
template <class L>
const L* find_variant(const std::vector<const L*>& list, const std::string& variant) {
  for (auto* l : list)
    if (variant == l->variant()) return l;
  return nullptr;
}

struct VariantRow;

// The launcher of an implemented table row, or nullptr (planned rows have none).
const Launcher* find_launcher(const std::string& op, const std::string& variant);
// Every launcher of every op (tests check that rows and launchers agree one to one).
const std::vector<const Launcher*>& all_launchers();
// The main kernel file of a row's launcher (ops with a single kernel build it directly); throws
// Internal for a row without one.
const std::string& row_kernel_file(const VariantRow& row);

}  // namespace clq
