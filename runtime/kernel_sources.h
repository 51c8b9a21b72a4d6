// The kernel-source registry: every file of kernels_cl/ is embedded at build time; setting
// CLQ_KERNEL_DIR makes the runtime read that folder instead (edit kernels without rebuilding).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace clq {
namespace detail {
struct EmbeddedKernel {
  const char* name;  // path relative to kernels_cl/, e.g. "common/numeric.clh"
  const char* data;
  size_t size;
};
extern const EmbeddedKernel kEmbeddedKernels[];  // ends with a null entry
}  // namespace detail

// Raw text of one kernel file (embedded, or from CLQ_KERNEL_DIR when set).
std::string kernel_file_text(const std::string& name);

// The file with every `#include "x.clh"` replaced by that header's text (each header once), so
// the program is built from one self-contained string and the cache key covers all of it.
std::string expanded_kernel_source(const std::string& name);

std::vector<std::string> embedded_kernel_names();

}  // namespace clq
