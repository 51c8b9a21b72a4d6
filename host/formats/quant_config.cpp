#include "host/formats/quant_config.h"

#include <sys/stat.h>

#include <cctype>
#include <climits>

#include "host/io/json_file.h"
#include "runtime/status.h"

namespace clq {

namespace {
// A field of the wrong JSON type is an error naming it: a config that says "group_size": "64"
// meant something, and ignoring it would run the layer with the wrong groups. null counts as absent.
struct Fields {
  const nlohmann::json& q;
  std::string source, prefix;

  const nlohmann::json* get(const char* name) const {
    auto it = q.find(name);
    return it == q.end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void wrong(const char* name, const char* want) const {
    fail(Status::kFormatError, source + ": " + prefix + name + " is " + json_kind(q[name]) + ", expected " + want);
  }
  std::optional<std::string> str(const char* name) const {
    const nlohmann::json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong(name, "a string");
    return v->get<std::string>();
  }
  std::optional<int64_t> integer(const char* name) const {
    const nlohmann::json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) wrong(name, "an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT_MAX))
      fail(Status::kFormatError, source + ": " + prefix + name + " = " + std::to_string(v->get<uint64_t>()) +
                                     " is out of range");
    const int64_t x = v->get<int64_t>();
    if (x < INT_MIN || x > INT_MAX)
      fail(Status::kFormatError, source + ": " + prefix + name + " = " + std::to_string(x) + " is out of range");
    return x;
  }
  std::optional<bool> boolean(const char* name) const {
    const nlohmann::json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) wrong(name, "true or false");
    return v->get<bool>();
  }
};

std::string lower(std::string s) {
  for (auto& ch : s) ch = char(std::tolower((unsigned char)ch));
  return s;
}

std::optional<QuantConfig> parse(const nlohmann::json& q, const std::string& source, const std::string& prefix) {
  QuantConfig c;
  c.source = source;
  if (!q.is_object())
    fail(Status::kFormatError, source + ": quantization settings are " + json_kind(q) + ", not a JSON object");
  Fields f{q, source, prefix};
  c.quant_method = lower(f.str("quant_method").value_or(""));
  if (auto bits = f.integer("bits"); bits && *bits != 4)
    fail(Status::kNotSupported,
         source + ": " + prefix + "bits = " + std::to_string(*bits) + "; clquant's int4 path needs 4");
  std::optional<int64_t> gs = f.integer("group_size");
  const char* gs_name = "group_size";
  if (!gs) {
    gs = f.integer("q_group_size");
    gs_name = "q_group_size";
  }
  if (gs) {
    if (*gs != -1 && *gs <= 0)
      fail(Status::kFormatError, source + ": " + prefix + gs_name + " = " + std::to_string(*gs) +
                                     " is neither -1 (one group) nor positive");
    c.group_size = int(*gs);
  }
  c.desc_act = f.boolean("desc_act");
  if (c.quant_method == "awq") {
    std::string version = lower(f.str("version").value_or("gemm"));
    if (version != "gemm")
      fail(Status::kNotSupported, source + ": AWQ version '" + version + "' is not the GEMM packing clquant reads");
    c.format = W4Format::kAwq;
  } else if (c.quant_method == "gptq" || c.quant_method.empty()) {
    std::string cf = f.str("checkpoint_format").value_or("gptq");
    W4Format fmt;
    if (!w4_format_from_name(cf, &fmt) || fmt == W4Format::kAwq)
      fail(Status::kFormatError, source + ": " + prefix + "checkpoint_format '" + cf + "' is neither gptq nor gptq_v2");
    c.format = fmt;
  }
  return c;
}
}  // namespace

std::optional<QuantConfig> read_quant_config(const std::string& dir) {
  for (const char* name : {"quantize_config.json", "config.json"}) {
    std::string path = dir + "/" + name;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;  // absent: try the next; anything else is read (and refused if special)
    nlohmann::json j = read_json_file(path, "quantization config");
    if (std::string(name) == "config.json") {
      if (!j.is_object() || !j.contains("quantization_config")) continue;
      return parse(j["quantization_config"], path, "quantization_config.");
    }
    return parse(j, path, "");
  }
  return std::nullopt;
}

}  // namespace clq
