#include "host/formats/quant_config.h"

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/status.h"

namespace clq {

namespace {
std::optional<QuantConfig> parse(const nlohmann::json& q, const std::string& source) {
  QuantConfig c;
  c.source = source;
  if (!q.is_object()) fail(Status::kFormatError, source + ": quantization settings are not a JSON object");
  c.quant_method = q.value("quant_method", std::string());
  for (auto& ch : c.quant_method) ch = char(std::tolower((unsigned char)ch));
  if (q.contains("bits") && q["bits"].is_number_integer() && q["bits"].get<int>() != 4)
    fail(Status::kNotSupported,
         source + ": bits = " + std::to_string(q["bits"].get<int>()) + "; clquant's int4 path needs 4");
  if (q.contains("group_size") && q["group_size"].is_number_integer())
    c.group_size = q["group_size"].get<int>();
  else if (q.contains("q_group_size") && q["q_group_size"].is_number_integer())
    c.group_size = q["q_group_size"].get<int>();
  if (q.contains("desc_act") && q["desc_act"].is_boolean()) c.desc_act = q["desc_act"].get<bool>();
  if (c.quant_method == "awq") {
    std::string version = q.value("version", std::string("gemm"));
    for (auto& ch : version) ch = char(std::tolower((unsigned char)ch));
    if (version != "gemm")
      fail(Status::kNotSupported, source + ": AWQ version '" + version + "' is not the GEMM packing clquant reads");
    c.format = W4Format::kAwq;
  } else if (c.quant_method == "gptq" || c.quant_method.empty()) {
    std::string cf = q.value("checkpoint_format", std::string("gptq"));
    W4Format f;
    if (!w4_format_from_name(cf, &f) || f == W4Format::kAwq)
      fail(Status::kFormatError, source + ": checkpoint_format '" + cf + "' is neither gptq nor gptq_v2");
    c.format = f;
  }
  return c;
}
}  // namespace

std::optional<QuantConfig> read_quant_config(const std::string& dir) {
  for (const char* name : {"quantize_config.json", "config.json"}) {
    std::string path = dir + "/" + name;
    std::ifstream in(path);
    if (!in) continue;
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      fail(Status::kFormatError, path + " is not valid JSON: " + e.what());
    }
    if (std::string(name) == "config.json") {
      if (!j.is_object() || !j.contains("quantization_config")) continue;
      return parse(j["quantization_config"], path);
    }
    return parse(j, path);
  }
  return std::nullopt;
}

}  // namespace clq
