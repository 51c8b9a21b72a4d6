#include "runtime/kernel_sources.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "runtime/status.h"

namespace clq {

std::string kernel_file_text(const std::string& name) {
  if (const char* dir = std::getenv("CLQ_KERNEL_DIR"); dir && *dir) {
    std::string path = std::string(dir) + "/" + name;
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(Status::kIoError, "CLQ_KERNEL_DIR is set but kernel file '" + path + "' cannot be read");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  for (const detail::EmbeddedKernel* k = detail::kEmbeddedKernels; k->name; ++k)
    if (name == k->name) return std::string(k->data, k->size);
  fail(Status::kInternal, "no embedded kernel file named '" + name + "'");
}

namespace {
void expand_into(const std::string& name, std::set<std::string>& seen, std::string& out, int depth) {
  if (depth > 8) fail(Status::kInternal, "kernel include depth exceeded at '" + name + "'");
  std::istringstream in(kernel_file_text(name));
  std::string line;
  while (std::getline(in, line)) {
    size_t p = line.find_first_not_of(" \t");
    if (p != std::string::npos && line.compare(p, 8, "#include") == 0) {
      size_t q1 = line.find('"', p), q2 = q1 == std::string::npos ? q1 : line.find('"', q1 + 1);
      if (q1 != std::string::npos && q2 != std::string::npos) {
        std::string inc = line.substr(q1 + 1, q2 - q1 - 1);
        if (seen.insert(inc).second) expand_into(inc, seen, out, depth + 1);
        continue;
      }
    }
    out += line;
    out += '\n';
  }
}
}  // namespace

std::string expanded_kernel_source(const std::string& name) {
  // Embedded files never change within a process, so each is expanded once; a CLQ_KERNEL_DIR
  // folder is re-read every time (its point is editing kernels while a program runs).
  const char* dir = std::getenv("CLQ_KERNEL_DIR");
  const bool from_dir = dir && *dir;
  static std::mutex mu;
  static std::map<std::string, std::string> memo;
  if (!from_dir) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = memo.find(name);
    if (it != memo.end()) return it->second;
  }
  std::set<std::string> seen;
  std::string out;
  expand_into(name, seen, out, 0);
  if (!from_dir) {
    std::lock_guard<std::mutex> lock(mu);
    memo.emplace(name, out);
  }
  return out;
}

std::vector<std::string> embedded_kernel_names() {
  std::vector<std::string> v;
  for (const detail::EmbeddedKernel* k = detail::kEmbeddedKernels; k->name; ++k) v.push_back(k->name);
  return v;
}

}  // namespace clq
