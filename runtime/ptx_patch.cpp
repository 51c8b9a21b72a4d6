#include "runtime/ptx_patch.h"

#include <algorithm>
#include <sstream>

#include "runtime/status.h"

namespace clq {

std::string PtxPatch::key() const {
  std::ostringstream s;
  s << "ptx-patch/1\ntarget=" << target << "\n";
  for (auto& [name, text] : markers) s << "marker " << name.size() << ":" << name << " " << text.size() << ":" << text << "\n";
  for (auto& d : module_decls) s << "decl " << d.size() << ":" << d << "\n";
  for (auto& o : optional_markers) s << "optional " << o.size() << ":" << o << "\n";
  return s.str();
}

namespace {
std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  std::string w;
  while (in >> w) v.push_back(w);
  return v;
}

std::string expand(const std::string& name, const std::string& text, const std::vector<std::string>& ops) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '{') {
      size_t close = text.find('}', i);
      std::string idx = close == std::string::npos ? "" : text.substr(i + 1, close - i - 1);
      bool digits = !idx.empty() && idx.size() <= 3 && idx.find_first_not_of("0123456789") == std::string::npos;
      if (digits) {
        size_t n = std::stoul(idx);
        if (n >= ops.size())
          fail(Status::kBuildFailed, "PTX marker " + name + " uses operand {" + idx + "} but carries " +
                                         std::to_string(ops.size()) + " operands");
        out += ops[n];
        i = close;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}
}  // namespace

std::string apply_ptx_patch(const std::string& ptx, const PtxPatch& patch) {
  std::istringstream in(ptx);
  std::ostringstream out;
  std::string line;
  bool saw_target = false;
  std::vector<int> used(patch.markers.size(), 0);
  while (std::getline(in, line)) {
    const size_t p = line.find_first_not_of(" \t");
    const std::string body = p == std::string::npos ? "" : line.substr(p);
    if (body.rfind(".target ", 0) == 0) {
      saw_target = true;
      if (!patch.target.empty()) {
        // Keep any further target options (", debug" etc.) after the architecture.
        const size_t comma = body.find(',');
        out << ".target " << patch.target << (comma == std::string::npos ? "" : body.substr(comma)) << "\n";
        continue;
      }
    }
    if (body.rfind(".address_size", 0) == 0) {
      out << line << "\n";
      for (auto& d : patch.module_decls) out << d << "\n";
      continue;
    }
    bool replaced = false;
    if (body.rfind("// ", 0) == 0) {
      std::vector<std::string> words = split_ws(body.substr(3));
      for (size_t m = 0; m < patch.markers.size() && !words.empty(); ++m) {
        if (words[0] != patch.markers[m].first) continue;
        std::vector<std::string> ops(words.begin() + 1, words.end());
        out << expand(patch.markers[m].first, patch.markers[m].second, ops) << "\n";
        ++used[m];
        replaced = true;
        break;
      }
    }
    if (!replaced) out << line << "\n";
  }
  if (!saw_target) fail(Status::kBuildFailed, "PTX patch: the program binary holds no .target line (not PTX text)");
  for (size_t m = 0; m < patch.markers.size(); ++m)
    if (!used[m] && std::find(patch.optional_markers.begin(), patch.optional_markers.end(), patch.markers[m].first) ==
                        patch.optional_markers.end())
      fail(Status::kBuildFailed, "PTX patch: marker " + patch.markers[m].first +
                                     " never occurs in the PTX (did the compiler drop the asm statement?)");
  return out.str();
}

}  // namespace clq
