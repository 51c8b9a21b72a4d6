#include "host/io/json_file.h"

#include "runtime/status.h"

namespace clq {

namespace {
// Deepest nesting of brackets outside strings: one linear pass, so a hostile file is refused
// before any parser or destructor recurses over it.
int max_depth(const std::string& s) {
  int depth = 0, worst = 0;
  bool in_str = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_str) {
      if (c == '\\') ++i;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return worst;
}
}  // namespace

nlohmann::json read_json_file(const std::string& path, const std::string& what, FileId* id) {
  std::string text = read_regular_file(path, what, kMaxJsonFileBytes, id);
  if (max_depth(text) > kMaxJsonDepth)
    fail(Status::kFormatError, what + " '" + path + "' nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(Status::kFormatError, what + " '" + path + "' is not valid JSON: " + e.what());
  }
}

std::string json_kind(const nlohmann::json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_null()) return "null";
  if (v.is_number_float()) return "a number with a fraction";
  if (v.is_number_integer()) return "an integer";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "a value";
}

}  // namespace clq
