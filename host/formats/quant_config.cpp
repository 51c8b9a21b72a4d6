#include "host/formats/quant_config.h"

#include <sys/stat.h>

#include <cctype>
#include <climits>
#include <regex>

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

// compressed-tensors: the weights' scheme is per config group. clquant reads the group that
// targets Linear layers (the only one llm-compressor writes for W4A16) and takes pack-quantized
// 4-bit int weights; other schemes are refused by name. `ignore` lists layers left unquantized.
std::optional<QuantConfig> parse_compressed_tensors(const nlohmann::json& q, const Fields& f, QuantConfig c) {
  const std::string& source = f.source;
  const std::string top_format = lower(f.str("format").value_or(""));
  const nlohmann::json* groups = f.get("config_groups");
  if (!groups) fail(Status::kFormatError, source + ": " + f.prefix + "config_groups is missing (compressed-tensors)");
  if (!groups->is_object()) f.wrong("config_groups", "an object");
  const nlohmann::json* chosen = nullptr;
  std::string chosen_name;
  for (auto it = groups->begin(); it != groups->end(); ++it) {
    if (!it->is_object())
      fail(Status::kFormatError, source + ": " + f.prefix + "config_groups." + it.key() + " is not an object");
    chosen = &*it;
    chosen_name = it.key();
    bool linear = false;
    auto t = it->find("targets");
    if (t != it->end() && t->is_array())
      for (auto& x : *t) linear |= x.is_string() && x.get<std::string>() == "Linear";
    if (linear) break;
  }
  if (!chosen) fail(Status::kFormatError, source + ": " + f.prefix + "config_groups is empty");
  {
    const std::string gp = f.prefix + "config_groups." + chosen_name + ".";
    Fields g{*chosen, source, gp};
    const std::string fmt = lower(g.str("format").value_or(top_format));
    const nlohmann::json* w = g.get("weights");
    if (!w || !w->is_object()) fail(Status::kFormatError, source + ": " + gp + "weights is missing or not an object");
    Fields wf{*w, source, gp + "weights."};
    const std::string type = lower(wf.str("type").value_or("int"));
    const int64_t bits = wf.integer("num_bits").value_or(0);
    c.ct_format = fmt;
    const nlohmann::json* acts = g.get("input_activations");
    if ((fmt == "pack-quantized" || fmt == "int-quantized") && type == "int" && (bits == 4 || bits == 8) &&
        !(fmt == "int-quantized" && bits == 4)) {
      // 8-bit weights with activations quantized too: W8A8 int8, which clquant runs in its
      // SmoothQuant form only (dynamic, per token, symmetric int8); weight-only would give other
      // numbers. (4-bit groups with activation schemes keep their earlier weight-only reading.)
      if (bits == 8 && acts && acts->is_object()) {
        Fields af{*acts, source, gp + "input_activations."};
        const std::string atype = lower(af.str("type").value_or("int"));
        const int64_t abits = af.integer("num_bits").value_or(0);
        const std::string astrategy = lower(af.str("strategy").value_or(""));
        const bool dynamic = af.boolean("dynamic").value_or(false), asym = !af.boolean("symmetric").value_or(true);
        if (atype != "int" || abits != 8 || astrategy != "token" || !dynamic || asym)
          fail(Status::kNotSupported, source + ": compressed-tensors " + gp + "input_activations is " + atype + " " +
                                          std::to_string(abits) + "-bit, strategy '" + astrategy + "'" +
                                          (dynamic ? ", dynamic" : ", static") + (asym ? ", asymmetric" : "") +
                                          "; clquant's W8A8 int8 quantizes activations dynamically per token, "
                                          "symmetric int8");
        c.int8_act = true;
      }
      c.format = W4Format::kCompressedTensors;
      c.bits = int(bits);
    } else if (fmt == "float-quantized" || type == "float") {
      c.ct_float = true;  // FP8 weights: the tensor names decide the layout
    } else {
      fail(Status::kNotSupported, source + ": compressed-tensors " + gp + " is format '" + fmt + "', " + type + " " +
                                      std::to_string(bits) + "-bit weights; clquant reads pack-quantized 4/8-bit int, "
                                      "int-quantized 8-bit int and float-quantized FP8");
    }
    const std::string strategy = lower(wf.str("strategy").value_or("group"));
    if (auto gs = wf.integer("group_size")) {
      if (*gs <= 0)
        fail(Status::kFormatError, source + ": " + gp + "weights.group_size = " + std::to_string(*gs) + " is not positive");
      c.group_size = int(*gs);
    } else if (strategy == "channel") {
      c.group_size = -1;
    }
    c.symmetric = wf.boolean("symmetric");
    if (auto ao = wf.get("actorder")) c.desc_act = !ao->is_boolean() || ao->get<bool>();
  }
  if (const nlohmann::json* ig = f.get("ignore")) {
    if (!ig->is_array()) f.wrong("ignore", "a list of layer names");
    for (auto& x : *ig) {
      if (!x.is_string()) fail(Status::kFormatError, source + ": " + f.prefix + "ignore holds a non-string entry");
      c.ignore.push_back(x.get<std::string>());
    }
  }
  return c;
}

std::optional<QuantConfig> parse(const nlohmann::json& q, const std::string& source, const std::string& prefix) {
  QuantConfig c;
  c.source = source;
  if (!q.is_object())
    fail(Status::kFormatError, source + ": quantization settings are " + json_kind(q) + ", not a JSON object");
  Fields f{q, source, prefix};
  c.quant_method = lower(f.str("quant_method").value_or(""));
  if (auto bits = f.integer("bits")) {
    if (*bits != 4 && *bits != 8)
      fail(Status::kNotSupported,
           source + ": " + prefix + "bits = " + std::to_string(*bits) + "; clquant's integer paths take 4 or 8");
    c.bits = int(*bits);
  }
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
  c.scale_fmt = lower(f.str("scale_fmt").value_or(""));
  if (!c.scale_fmt.empty() && c.scale_fmt != "ue8m0")
    fail(Status::kNotSupported, source + ": " + prefix + "scale_fmt '" + c.scale_fmt +
                                    "' is not one clquant knows (ue8m0, or none for fp32 scales)");
  if (c.quant_method == "compressed-tensors") return parse_compressed_tensors(q, f, c);
  if (c.quant_method == "awq") {
    if (c.bits != 4)
      fail(Status::kNotSupported, source + ": AWQ with bits = " + std::to_string(c.bits) + "; AWQ's GEMM packing is 4-bit");
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

bool QuantConfig::ignores(const std::string& layer) const {
  for (const std::string& pat : ignore) {
    if (pat.rfind("re:", 0) == 0) {
      try {
        if (std::regex_match(layer, std::regex(pat.substr(3)))) return true;
      } catch (const std::regex_error&) {
        fail(Status::kFormatError, source + ": ignore pattern '" + pat + "' is not a valid regular expression");
      }
    } else if (pat == layer) {
      return true;
    }
  }
  return false;
}

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
