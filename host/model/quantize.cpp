#include "host/model/quantize.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <nlohmann/json.hpp>
#include <map>
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
  std::vector<std::string> entries;  // names in the folder
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
                                       "); give a new or empty folder, or --force to replace its weights and config.json");
  d.entries = std::move(entries);
  return d;
}

// Names of files an earlier run of clquant quantize (or save_pretrained) leaves as weights: with
// --force they are replaced or removed as a set, so no loader mixes an old index or shard with
// the new ones (transformers reads model.safetensors before an index; clquant the index first).
bool is_weights_name(const std::string& n) {
  static const std::regex shard("model-[0-9]+-of-[0-9]+\\.safetensors");
  return n == "model.safetensors" || n == "model.safetensors.index.json" || std::regex_match(n, shard);
}

std::string shard_name(size_t i, size_t n) {
  if (n == 1) return "model.safetensors";
  char b[64];
  std::snprintf(b, sizeof b, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return b;
}

// The tensors of the output in order, split into shards: a new shard where the next tensor would
// take the current one past `max`, and after a tensor larger than `max` (which stands alone).
std::vector<std::vector<StTensor>> plan_shards(const std::vector<StTensor>& all, uint64_t max) {
  std::vector<std::vector<StTensor>> shards(1);
  uint64_t bytes = 0;
  for (auto& t : all) {
    if (!shards.back().empty() && (bytes > max || t.nbytes > max - bytes)) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(t);
    bytes += t.nbytes;
  }
  return shards;
}
constexpr size_t kMaxShards = 99999;  // five digits in model-00001-of-0000N, as transformers names them

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
  if (opt.max_shard_size == 0)
    fail(Status::kInvalidArgument, "max shard size 0 bytes: a shard holds at least one tensor; give at least 1 byte");
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
  OutDir od = check_out_dir(opt.output, ck->dir(), opt.force);

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

  // The whole output laid out before any device work: every tensor's name, dtype and shape (the
  // quantized ones from quantized_layout), the shards and their names, each checked as an output.
  std::vector<StTensor> all;
  for (auto& name : names) {
    const StTensor& t = ck->require(name);
    if (std::binary_search(chosen.begin(), chosen.end(), name)) {
      const DenseWeight w = dense_weight(t);
      for (auto& q : quantized_layout(layer_of(name), w.N, w.K, opt.spec)) all.push_back(q);
    } else {
      all.push_back(t);
    }
  }
  const std::vector<std::vector<StTensor>> plan = plan_shards(all, opt.max_shard_size);
  if (plan.size() > kMaxShards)
    fail(Status::kInvalidArgument, "max shard size " + std::to_string(opt.max_shard_size) + " bytes splits the " +
                                       std::to_string(all.size()) + " output tensors into " + std::to_string(plan.size()) +
                                       " shards; at most " + std::to_string(kMaxShards) + " (give a larger size)");
  const bool sharded = plan.size() > 1;
  const std::string dir = opt.output + "/", config_path = dir + "config.json",
                    index_path = dir + "model.safetensors.index.json";
  QuantizeReport rep;
  rep.weights_path = sharded ? index_path : dir + "model.safetensors";
  rep.config_path = config_path;
  for (size_t i = 0; i < plan.size(); ++i) rep.shards.push_back(shard_name(i, plan.size()));
  for (auto& t : all) rep.total_size += t.nbytes;
  auto stale_of = [&](const OutDir& d) {
    std::vector<std::string> v;
    for (auto& e : d.entries)
      if (is_weights_name(e) && std::find(rep.shards.begin(), rep.shards.end(), e) == rep.shards.end() &&
          !(sharded && e == "model.safetensors.index.json"))
        v.push_back(e);
    std::sort(v.begin(), v.end());
    return v;
  };
  auto check_outputs = [&](const OutDir& d) {
    for (auto& f : rep.shards) check_output_path(dir + f, inputs);
    if (sharded) check_output_path(index_path, inputs);
    check_output_path(config_path, inputs);
    // What --force removes must be a regular file that no input is (a hard link to an input shard
    // is left alone, and refused here rather than half-way through).
    for (auto& f : stale_of(d)) check_output_path(dir + f, inputs);
  };
  check_outputs(od);

  // The folder is made (or checked again: it may have changed since) just before the first write.
  bool made_dir = false;
  if (!check_out_dir(opt.output, ck->dir(), opt.force).exists) {
    if (::mkdir(opt.output.c_str(), 0777) == 0)
      made_dir = true;
    else if (errno != EEXIST)
      fail(Status::kIoError, "cannot create output folder '" + opt.output + "': " + std::strerror(errno));
  }
  std::vector<std::string> committed_new;  // names this run put in place that did not exist before
  try {
    od = check_out_dir(opt.output, ck->dir(), opt.force);
    check_outputs(od);
    const std::vector<std::string> stale = stale_of(od);
    const std::map<std::string, std::string> meta = {{"format", "pt"}};

    // Streamed: one shard file open at a time, one quantized layer in host memory at a time.
    std::vector<std::unique_ptr<SafetensorsStream>> files;
    size_t shard = 0, in_shard = 0;
    auto put = [&](const StTensor& t) {
      if (files.empty()) files.push_back(std::make_unique<SafetensorsStream>(dir + rep.shards[0], plan[0], meta));
      while (in_shard == plan[shard].size()) {
        ++shard;
        in_shard = 0;
        files.push_back(std::make_unique<SafetensorsStream>(dir + rep.shards[shard], plan[shard], meta));
      }
      files.back()->append(t);
      ++in_shard;
    };
    WeightQuantizer quantizer(c);
    for (auto& name : names) {
      const StTensor& t = ck->require(name);
      if (!std::binary_search(chosen.begin(), chosen.end(), name)) {
        put(t);
        ++rep.copied;
        continue;
      }
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
      const QuantizedTensors qt = quantized_tensors(q, lr.layer);
      for (auto& x : qt.tensors) put(x);
    }
    if (files.size() != plan.size() || in_shard != plan.back().size())
      fail(Status::kInternal, "quantize: " + std::to_string(files.size()) + " of " + std::to_string(plan.size()) +
                                  " planned shards written");

    config["quantization_config"] = nlohmann::json::parse(quantization_config_json(opt.spec, ignore));
    const std::string text = config.dump(2) + "\n";
    TempFile config_file(config_path);
    config_file.write(text.data(), text.size());
    config_file.close();
    std::unique_ptr<TempFile> index_file;
    if (sharded) {
      // As transformers writes it: metadata.total_size (tensor bytes) and weight_map, sorted.
      nlohmann::json wm = nlohmann::json::object();
      for (size_t i = 0; i < plan.size(); ++i)
        for (auto& t : plan[i]) wm[t.name] = rep.shards[i];
      const nlohmann::json index = {{"metadata", {{"total_size", rep.total_size}}}, {"weight_map", wm}};
      const std::string itext = index.dump(2) + "\n";
      index_file = std::make_unique<TempFile>(index_path);
      index_file->write(itext.data(), itext.size());
      index_file->close();
    }

    // Everything is complete on disk: rename into place, shards before the index that names them,
    // the config, and only then remove what the new set does not replace.
    auto is_new = [&](const std::string& f) { return std::find(od.entries.begin(), od.entries.end(), f) == od.entries.end(); };
    for (size_t i = 0; i < files.size(); ++i) {
      files[i]->commit(inputs);
      if (is_new(rep.shards[i])) committed_new.push_back(rep.shards[i]);
    }
    if (index_file) {
      index_file->commit(index_path, inputs);
      if (is_new("model.safetensors.index.json")) committed_new.push_back("model.safetensors.index.json");
    }
    config_file.commit(config_path, inputs);
    committed_new.clear();  // the new checkpoint stands; a stale file that cannot go is reported, not undone
    for (auto& f : stale) {
      if (::unlink((dir + f).c_str()) != 0 && errno != ENOENT)
        fail(Status::kIoError, "cannot remove the earlier output '" + dir + f + "' (the new checkpoint is in place " +
                                   "beside it; remove it by hand): " + std::strerror(errno));
      rep.removed.push_back(f);
    }
    // Temporaries a killed earlier run left (this run's own are all renamed by now): only regular
    // files of exactly TempFile's name shape that are no input; a link or another name stays, and
    // so does one that cannot be removed (the new checkpoint stands without its removal).
    std::vector<std::string> temps;
    for (auto& f : od.entries) {
      struct stat st {};
      if (!is_temp_file_name(f) || ::lstat((dir + f).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      const FileId id{uint64_t(st.st_dev), uint64_t(st.st_ino)};
      if (std::find(inputs.begin(), inputs.end(), id) == inputs.end()) temps.push_back(f);
    }
    std::sort(temps.begin(), temps.end());
    for (auto& f : temps)
      if (::unlink((dir + f).c_str()) == 0) rep.removed.push_back(f);
  } catch (...) {
    // Temporaries are removed by their owners; what this run renamed into place under a new name
    // goes too (a replaced file cannot be given back), and so does a folder it made.
    for (auto& f : committed_new) ::unlink((dir + f).c_str());
    if (made_dir) ::rmdir(opt.output.c_str());
    throw;
  }
  return rep;
}

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  const std::string rule = "a whole number of bytes, optionally followed by B, KB, MB, GB, TB (powers of 1000) or "
                           "KiB, MiB, GiB, TiB (powers of 1024), e.g. 5GB or 500MiB";
  // An empty `what`: the caller names the value itself (a command-line validator does).
  const std::string value = (what.empty() ? "" : what + " ") + "'" + text + "'";
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0)
    fail(Status::kInvalidArgument, value + " is not a size: " + rule);
  std::string unit = text.substr(i);
  for (auto& ch : unit) ch = char(std::tolower((unsigned char)ch));
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"", 1},           {"b", 1},
      {"kb", 1000ull},   {"mb", 1000ull * 1000},    {"gb", 1000ull * 1000 * 1000}, {"tb", 1000ull * 1000 * 1000 * 1000},
      {"kib", 1ull << 10}, {"mib", 1ull << 20},     {"gib", 1ull << 30},           {"tib", 1ull << 40}};
  uint64_t mul = 0;
  for (auto& [u, m] : kUnits)
    if (unit == u) mul = m;
  if (mul == 0)
    fail(Status::kInvalidArgument, value + " has an unknown unit '" + text.substr(i) + "': " + rule);
  uint64_t v = 0;
  for (size_t j = 0; j < i; ++j) {
    const uint64_t d = uint64_t(text[j] - '0');
    if (v > (UINT64_MAX - d) / 10)
      fail(Status::kInvalidArgument, value + " is larger than 2^64 - 1 bytes");
    v = v * 10 + d;
  }
  if (v > UINT64_MAX / mul) fail(Status::kInvalidArgument, value + " is larger than 2^64 - 1 bytes");
  if (v == 0) fail(Status::kInvalidArgument, value + " must be at least 1 byte: a shard holds a tensor");
  return v * mul;
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
          {"config", r.config_path},
          {"shards", r.shards},
          {"total_size", r.total_size},
          {"removed", r.removed}};
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
  m.kind = !spec.is_int() ? MoeWeightKind::kFp8 : spec.bits() == 8 ? MoeWeightKind::kInt8 : MoeWeightKind::kInt4;
  m.validated = false;
}
}  // namespace

OnlineQuantMoe quantize_moe(Context& c, const MoeLayer& dense, const QuantSpec& spec) {
  check_quant_spec(spec);
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
