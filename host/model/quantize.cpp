#include "host/model/quantize.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <nlohmann/json.hpp>
#include <regex>

#include "host/io/json_file.h"
#include "host/ops/quantize/weight_quant.h"
#include "runtime/safe_file.h"
#include "runtime/status.h"

namespace clq {

namespace {
const std::string kWeight = ".weight";

bool is_candidate(const StTensor& t) {
  return t.shape.size() == 2 && t.name.size() > kWeight.size() &&
         t.name.compare(t.name.size() - kWeight.size(), kWeight.size(), kWeight) == 0 &&
         (t.dtype == StDType::kF16 || t.dtype == StDType::kBF16 || t.dtype == StDType::kF32);
}
std::string layer_of(const std::string& name) { return name.substr(0, name.size() - kWeight.size()); }

// The output folder's state: refuses what it must not write into, before any work.
struct OutDir {
  bool exists = false;
};
OutDir check_out_dir(const std::string& out, const std::string& in_dir, bool force) {
  OutDir d;
  if (out.empty()) fail(Status::kInvalidArgument, "the output folder name is empty");
  struct stat st {};
  if (::lstat(out.c_str(), &st) != 0) {
    if (errno != ENOENT) fail(Status::kIoError, "cannot examine output '" + out + "': " + std::strerror(errno));
    return d;
  }
  if (!S_ISDIR(st.st_mode))
    fail(Status::kInvalidArgument, "output '" + out + "' exists and is not a folder (" +
                                       (S_ISLNK(st.st_mode) ? "a symbolic link" : S_ISREG(st.st_mode) ? "a file" : "a special file") +
                                       "); clquant quantize writes a new checkpoint folder");
  d.exists = true;
  struct stat in {};
  if (::stat(in_dir.c_str(), &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino)
    fail(Status::kInvalidArgument, "output folder '" + out + "' is the input checkpoint's folder; the input is never overwritten");
  std::vector<std::string> entries;
  if (DIR* dir = ::opendir(out.c_str())) {
    while (dirent* e = ::readdir(dir))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) entries.push_back(e->d_name);
    ::closedir(dir);
  } else {
    fail(Status::kIoError, "cannot read output folder '" + out + "': " + std::strerror(errno));
  }
  if (!entries.empty() && !force)
    fail(Status::kInvalidArgument, "output folder '" + out + "' is not empty (it holds '" + entries.front() + "'" +
                                       (entries.size() > 1 ? " and " + std::to_string(entries.size() - 1) + " more" : "") +
                                       "); give a new or empty folder, or --force to replace its model.safetensors and config.json");
  for (auto& e : entries)
    if (e == "model.safetensors.index.json")
      fail(Status::kInvalidArgument, "output folder '" + out + "' holds model.safetensors.index.json, which would "
                                     "shadow the model.safetensors written here; remove it first");
  return d;
}

// config.json beside the input, if any; refuses an input that is already quantized.
nlohmann::json input_config(const std::string& dir) {
  if (file_id(dir + "/quantize_config.json"))
    fail(Status::kInvalidArgument, "'" + dir + "/quantize_config.json' says the checkpoint is already quantized; "
                                   "online quantization takes a dense (bf16/fp16/fp32) checkpoint");
  if (!file_id(dir + "/config.json")) return nlohmann::json::object();
  nlohmann::json cfg = read_json_file(dir + "/config.json", "config.json");
  if (!cfg.is_object()) fail(Status::kFormatError, "'" + dir + "/config.json' is not a JSON object");
  if (cfg.contains("quantization_config") && !cfg["quantization_config"].is_null())
    fail(Status::kInvalidArgument, "'" + dir + "/config.json' has a quantization_config: the checkpoint is already "
                                   "quantized; online quantization takes a dense (bf16/fp16/fp32) checkpoint");
  return cfg;
}
}  // namespace

QuantizeReport quantize_checkpoint(Context& c, const QuantizeCheckpointOptions& opt) {
  check_quant_spec(opt.spec);
  std::regex re;
  if (!opt.layers.empty()) {
    try {
      re = std::regex(opt.layers, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      fail(Status::kInvalidArgument, "--layers '" + opt.layers + "' is not a valid regular expression: " + e.what());
    }
  }
  auto ck = std::make_shared<const Checkpoint>(Checkpoint::open(opt.input));
  if (ck->gguf()) fail(Status::kNotSupported, "'" + opt.input + "' is a GGUF file; clquant quantize reads safetensors checkpoints");
  nlohmann::json config = input_config(ck->dir());
  std::vector<FileId> inputs = ck->file_ids();
  for (const char* f : {"/config.json", "/quantize_config.json"})
    if (auto id = file_id(ck->dir() + f)) inputs.push_back(*id);
  check_out_dir(opt.output, ck->dir(), opt.force);
  const std::string weights_path = opt.output + "/model.safetensors", config_path = opt.output + "/config.json";
  check_output_path(weights_path, inputs);
  check_output_path(config_path, inputs);

  // Select and validate every layer before any device work.
  const std::vector<std::string> names = ck->names_with_prefix("");
  std::vector<std::string> chosen, ignore;
  for (auto& name : names) {
    const StTensor& t = ck->require(name);
    if (!is_candidate(t)) continue;
    const std::string L = layer_of(name);
    const bool take = opt.layers.empty() ? default_quantizable(t) : std::regex_search(L, re);
    if (!take) {
      ignore.push_back(L);
      continue;
    }
    const DenseWeight w = dense_weight(t);
    check_writable(L, w.N, w.K, opt.spec);
    check_quant_input(w, opt.spec);
    chosen.push_back(name);
  }
  if (chosen.empty())
    fail(Status::kInvalidArgument, "no layer of '" + opt.input + "' is selected for quantization (" +
                                       (opt.layers.empty() ? std::string("the default rule: 2-D *.weight, no embeddings, lm_head, norms or routers")
                                                           : "--layers '" + opt.layers + "'") + ")");

  QuantizeReport rep;
  rep.weights_path = weights_path;
  rep.config_path = config_path;
  WeightQuantizer quantizer(c);
  SafetensorsWriter out;
  out.set_metadata("format", "pt");
  size_t next = 0;
  for (auto& name : names) {
    const StTensor& t = ck->require(name);
    if (next < chosen.size() && chosen[next] == name) {
      ++next;
      const DenseWeight w = dense_weight(t);
      QuantizedWeight q;
      const OpEvents ev = quantizer.run(w, opt.spec, &q);
      LayerQuantReport lr;
      lr.layer = layer_of(name);
      lr.N = w.N;
      lr.K = w.K;
      lr.error = quant_error(w, q);
      lr.device_ms = ev.ms();
      rep.total.add(lr.error);
      rep.layers.push_back(lr);
      quantized_tensors(q, lr.layer).add_to(out);
    } else {
      out.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
      ++rep.copied;
    }
  }
  config["quantization_config"] = nlohmann::json::parse(quantization_config_json(opt.spec, ignore));
  const std::string text = config.dump(2) + "\n";
  // Checked again at the end: the folder may have changed while the weights were quantized.
  if (!check_out_dir(opt.output, ck->dir(), opt.force).exists) {
    if (::mkdir(opt.output.c_str(), 0777) != 0 && errno != EEXIST)
      fail(Status::kIoError, "cannot create output folder '" + opt.output + "': " + std::strerror(errno));
  }
  out.write(weights_path, inputs);
  write_file_atomic(config_path, {{text.data(), text.size()}}, inputs);
  return rep;
}

std::string quantize_report_json(const QuantizeReport& r, const QuantSpec& spec, int indent) {
  nlohmann::json layers = nlohmann::json::array();
  for (auto& l : r.layers)
    layers.push_back({{"layer", l.layer},
                      {"N", l.N},
                      {"K", l.K},
                      {"rel_fro_error", l.error.rel_fro()},
                      {"max_abs_error", l.error.max_abs},
                      {"device_ms", l.device_ms}});
  const nlohmann::json j = {{"method", quant_method_name(spec.method)},
          {"group_size", spec.is_int() ? spec.group_size : 128},
          {"symmetric", spec.symmetric},
          {"layers", layers},
          {"overall", {{"rel_fro_error", r.total.rel_fro()}, {"max_abs_error", r.total.max_abs}, {"weights", r.total.count}}},
          {"copied_tensors", r.copied},
          {"weights", r.weights_path},
          {"config", r.config_path}};
  return j.dump(indent);
}

OnlineQuantLayer quantize_linear(Context& c, std::shared_ptr<const Checkpoint> ck, const std::string& P,
                                 const QuantSpec& spec) {
  if (!ck) fail(Status::kInvalidArgument, "quantize_linear: no checkpoint");
  if (ck->gguf()) fail(Status::kNotSupported, "--quantize takes a dense safetensors layer; the checkpoint is a GGUF file");
  const StTensor* t = ck->find(P + kWeight);
  if (!t) {
    const bool quantized = ck->find(P + ".qweight") || ck->find(P + ".weight_packed");
    fail(Status::kFormatError, "no tensor '" + P + ".weight'" +
                                   (quantized ? std::string(": the layer is already quantized (drop --quantize)") : ""));
  }
  if (t->dtype == StDType::kF8E4M3 || t->dtype == StDType::kI8)
    fail(Status::kInvalidArgument, "'" + t->name + "' is already quantized (" + st_dtype_name(t->dtype) + "); --quantize takes a dense F16/BF16/F32 weight");
  const DenseWeight w = dense_weight(*t);
  check_writable(P, w.N, w.K, spec);
  OnlineQuantLayer out;
  QuantizedWeight q;
  out.events = WeightQuantizer(c).run(w, spec, &q);
  out.error = quant_error(w, q);
  out.tensors = quantized_tensors(q, P);
  out.layer.checkpoint = ck;
  out.layer.prefix = P;
  if (spec.is_int()) {
    W4Layer l;
    l.ck = out.tensors.w4();
    l.shape = validate_w4(l.ck);
    l.format_source = std::string("--quantize ") + quant_method_name(spec.method) + (spec.symmetric ? "" : " --asym");
    out.layer.weights = l;
  } else {
    Fp8Layer l;
    l.ck = out.tensors.fp8();
    l.shape = validate_fp8(l.ck);
    out.layer.weights = l;
  }
  return out;
}

namespace {
// Replaces m's dense projections by quantized ones (tensors kept in `keep`).
void quantize_experts(Context& c, MoeCheckpoint& m, const QuantSpec& spec, OnlineQuantMoe& out) {
  if (m.kind != MoeWeightKind::kDense)
    fail(Status::kInvalidArgument, std::string("--quantize takes dense experts; these are ") + moe_kind_name(m.kind));
  WeightQuantizer quantizer(c);
  std::vector<const StTensor*>* dense[3] = {&m.gate_d, &m.up_d, &m.down_d};
  std::vector<W4Checkpoint>* q4[3] = {&m.gate_q, &m.up_q, &m.down_q};
  std::vector<Fp8Checkpoint>* f8[3] = {&m.gate_f, &m.up_f, &m.down_f};
  for (int p = 0; p < 3; ++p)
    for (const StTensor* t : *dense[p]) {
      const DenseWeight w = dense_weight(*t);
      const std::string P = layer_of(t->name);
      check_writable(P, w.N, w.K, spec);
      QuantizedWeight q;
      out.device_ms += quantizer.run(w, spec, &q).ms();
      out.error.add(quant_error(w, q));
      out.tensors.push_back(quantized_tensors(q, P));
      if (spec.is_int())
        q4[p]->push_back(out.tensors.back().w4());
      else
        f8[p]->push_back(out.tensors.back().fp8());
    }
  for (auto* d : dense) d->clear();
  m.kind = spec.is_int() ? MoeWeightKind::kInt4 : MoeWeightKind::kFp8;
  m.validated = false;
}
}  // namespace

OnlineQuantMoe quantize_moe(Context& c, const MoeLayer& dense, const QuantSpec& spec) {
  check_quant_spec(spec);
  if (spec.method == QuantMethod::kInt8)
    fail(Status::kNotSupported, "MoE experts are dense, int4 or block FP8: --quantize int8 has no MoE expert kind");
  OnlineQuantMoe out;
  out.layer = dense;
  MoeCheckpoint& m = out.layer.moe;
  quantize_experts(c, m, spec, out);
  if (m.shared) {
    out.shared = std::make_shared<MoeCheckpoint>(*m.shared);
    quantize_experts(c, *out.shared, spec, out);
    validate_moe(*out.shared);
    out.shared->validated = true;
    m.shared = out.shared;
  }
  validate_moe(m);
  m.validated = true;
  out.layer.format_source = std::string("--quantize ") + quant_method_name(spec.method);
  return out;
}

}  // namespace clq
