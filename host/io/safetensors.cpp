#include "host/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "runtime/status.h"

namespace clq {

namespace {
struct DTypeInfo {
  StDType t;
  const char* name;
  size_t size;
};
const DTypeInfo kDTypes[] = {
    {StDType::kF64, "F64", 8},   {StDType::kF32, "F32", 4},        {StDType::kF16, "F16", 2},
    {StDType::kBF16, "BF16", 2}, {StDType::kI64, "I64", 8},        {StDType::kI32, "I32", 4},
    {StDType::kI16, "I16", 2},   {StDType::kI8, "I8", 1},          {StDType::kU64, "U64", 8},
    {StDType::kU32, "U32", 4},   {StDType::kU16, "U16", 2},        {StDType::kU8, "U8", 1},
    {StDType::kBool, "BOOL", 1}, {StDType::kF8E4M3, "F8_E4M3", 1}, {StDType::kF8E5M2, "F8_E5M2", 1},
};

[[noreturn]] void bad(const std::string& label, const std::string& msg) {
  fail(Status::kFormatError, "safetensors file '" + label + "': " + msg);
}
}  // namespace

const char* st_dtype_name(StDType t) {
  for (auto& d : kDTypes)
    if (d.t == t) return d.name;
  return "?";
}
size_t st_dtype_size(StDType t) {
  for (auto& d : kDTypes)
    if (d.t == t) return d.size;
  return 0;
}
bool st_dtype_from_name(const std::string& s, StDType* out) {
  for (auto& d : kDTypes)
    if (s == d.name) {
      *out = d.t;
      return true;
    }
  return false;
}

int64_t StTensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}
std::string StTensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void parse_safetensors(const uint8_t* base, size_t size, const std::string& label, std::vector<StTensor>* tensors,
                       std::map<std::string, std::string>* metadata) {
  if (size < 8) bad(label, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t(base[i]) << (8 * i);  // little-endian u64
  if (hlen > SafetensorsFile::kMaxHeaderBytes)
    bad(label, "header length " + std::to_string(hlen) + " exceeds the 100 MB limit");
  if (hlen > size - 8)
    bad(label, "header length " + std::to_string(hlen) + " runs past the end of the file (" + std::to_string(size) +
                   " bytes)");
  if (hlen < 2) bad(label, "header length " + std::to_string(hlen) + " is too short for a JSON object");
  const char* hbeg = reinterpret_cast<const char*>(base + 8);
  std::string header(hbeg, hbeg + hlen);

  // Duplicate top-level names are an error: a JSON parser would silently keep the last one.
  std::set<std::string> seen_keys;
  std::string duplicate;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1) {
      std::string k = parsed.get<std::string>();
      if (!seen_keys.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header, cb);
  } catch (const nlohmann::json::exception& e) {
    bad(label, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) bad(label, "tensor name '" + duplicate + "' appears twice in the header");
  if (!j.is_object()) bad(label, "header is not a JSON object");

  const uint64_t data_size = size - 8 - hlen;
  struct Span {
    uint64_t b, e;
    size_t idx;
  };
  std::vector<Span> spans;
  tensors->clear();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad(label, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad(label, "__metadata__ value for '" + m.key() + "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) bad(label, "entry '" + name + "' is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad(label, "tensor '" + name + "' has no dtype string");
    StDType dt;
    std::string dts = v["dtype"].get<std::string>();
    if (!st_dtype_from_name(dts, &dt)) bad(label, "tensor '" + name + "' has unknown dtype '" + dts + "'");
    if (!v.contains("shape") || !v["shape"].is_array()) bad(label, "tensor '" + name + "' has no shape list");
    StTensor t;
    t.name = name;
    t.dtype = dt;
    uint64_t numel = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_integer() || (d.is_number_integer() && d.get<int64_t>() < 0))
        bad(label, "tensor '" + name + "' has a shape entry that is not a non-negative integer: " + d.dump());
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t(1) << 62) / dim)
        bad(label, "tensor '" + name + "' shape " + v["shape"].dump() + " overflows 64-bit element count");
      numel *= dim;
      t.shape.push_back(int64_t(dim));
    }
    uint64_t esize = st_dtype_size(dt);
    if (numel > (uint64_t(1) << 62) / esize) bad(label, "tensor '" + name + "' byte size overflows");
    uint64_t nbytes = numel * esize;
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
        !v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned())
      bad(label, "tensor '" + name + "' data_offsets is not [begin, end] of non-negative integers");
    uint64_t b = v["data_offsets"][0].get<uint64_t>(), e = v["data_offsets"][1].get<uint64_t>();
    if (b > e)
      bad(label,
          "tensor '" + name + "' data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] has begin > end");
    if (e > data_size)
      bad(label, "tensor '" + name + "' data_offsets end " + std::to_string(e) + " is past the data section (" +
                     std::to_string(data_size) + " bytes)");
    if (e - b != nbytes)
      bad(label, "tensor '" + name + "' holds " + std::to_string(e - b) + " bytes but dtype " + dts + " and shape " +
                     v["shape"].dump() + " need " + std::to_string(nbytes));
    t.data = base + 8 + hlen + b;
    t.nbytes = size_t(nbytes);
    spans.push_back({b, e, tensors->size()});
    tensors->push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.b != b.b ? a.b < b.b : a.e < b.e; });
  uint64_t pos = 0;
  for (auto& s : spans) {
    const std::string& nm = (*tensors)[s.idx].name;
    if (s.b < pos)
      bad(label, "tensor '" + nm + "' data_offsets begin " + std::to_string(s.b) +
                     " overlaps the previous tensor (ends at " + std::to_string(pos) + ")");
    if (s.b > pos)
      bad(label, "gap in the data section: bytes " + std::to_string(pos) + ".." + std::to_string(s.b) +
                     " before tensor '" + nm + "' belong to no tensor");
    pos = s.e;
  }
  if (pos != data_size)
    bad(label, "tensors cover " + std::to_string(pos) + " bytes but the data section holds " +
                   std::to_string(data_size) + " (trailing bytes belong to no tensor)");
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(Status::kIoError, "cannot open safetensors file '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(Status::kIoError, "'" + path + "' is not a regular file");
  }
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_size_ = size_t(st.st_size);
  if (f->map_size_ > 0) {
    void* m = ::mmap(nullptr, f->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      fail(Status::kIoError, "cannot map '" + path + "': " + std::strerror(errno));
    }
    f->map_ = m;
  }
  ::close(fd);
  static const uint8_t empty[1] = {0};
  parse_safetensors(f->map_ ? static_cast<const uint8_t*>(f->map_) : empty, f->map_size_, path, &f->tensors_,
                    &f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsWriter::add(const std::string& name, StDType dtype, const std::vector<int64_t>& shape, const void* data,
                            size_t nbytes) {
  int64_t numel = 1;
  for (auto d : shape) {
    if (d < 0) fail(Status::kInvalidArgument, "tensor '" + name + "': negative dimension");
    numel *= d;
  }
  if (size_t(numel) * st_dtype_size(dtype) != nbytes)
    fail(Status::kInvalidArgument, "tensor '" + name + "': " + std::to_string(nbytes) + " bytes given, shape needs " +
                                       std::to_string(size_t(numel) * st_dtype_size(dtype)));
  for (auto& e : entries_)
    if (e.name == name) fail(Status::kInvalidArgument, "tensor '" + name + "' added twice");
  Entry e{name, dtype, shape,
          std::vector<uint8_t>(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes)};
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t off = 0;
  for (auto& e : entries_) {
    h[e.name] = {{"dtype", st_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string hs = h.dump();
  while ((8 + hs.size()) % 8) hs += ' ';  // keep tensor data 8-byte aligned, as the reference writer does
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(Status::kIoError, "cannot write '" + tmp + "': " + std::strerror(errno));
    uint64_t n = hs.size();
    uint8_t le[8];
    for (int i = 0; i < 8; ++i) le[i] = uint8_t(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(le), 8);
    out.write(hs.data(), std::streamsize(hs.size()));
    for (auto& e : entries_) out.write(reinterpret_cast<const char*>(e.bytes.data()), std::streamsize(e.bytes.size()));
    out.flush();
    if (!out.good()) {
      out.close();
      std::remove(tmp.c_str());
      fail(Status::kIoError, "writing '" + path + "' failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    std::remove(tmp.c_str());
    fail(Status::kIoError, "cannot rename '" + tmp + "' to '" + path + "': " + err);
  }
}

namespace {
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}
std::string dirname_of(const std::string& p) {
  auto s = p.find_last_of('/');
  return s == std::string::npos ? "." : (s == 0 ? "/" : p.substr(0, s));
}
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
}  // namespace

Checkpoint Checkpoint::open(const std::string& path_in) {
  std::string path = path_in;
  if (is_dir(path)) {
    if (exists(path + "/model.safetensors.index.json"))
      path += "/model.safetensors.index.json";
    else if (exists(path + "/model.safetensors"))
      path += "/model.safetensors";
    else
      fail(Status::kIoError, "folder '" + path + "' holds neither model.safetensors nor model.safetensors.index.json");
  }
  Checkpoint c;
  c.dir_ = dirname_of(path);
  std::vector<std::string> files;
  if (ends_with(path, ".json")) {
    std::ifstream in(path);
    if (!in) fail(Status::kIoError, "cannot open index '" + path + "'");
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      fail(Status::kFormatError, "index '" + path + "' is not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(Status::kFormatError, "index '" + path + "' has no weight_map object");
    std::map<std::string, std::string> want;  // tensor -> shard
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        fail(Status::kFormatError, "index '" + path + "': weight_map['" + it.key() + "'] is not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        fail(Status::kFormatError, "index '" + path + "': shard name '" + shard + "' must be a plain file name");
      want[it.key()] = shard;
      if (std::find(files.begin(), files.end(), shard) == files.end()) files.push_back(shard);
    }
    for (auto& f : files) c.files_.push_back(SafetensorsFile::open(c.dir_ + "/" + f));
    for (auto& [name, shard] : want) {
      size_t fi = size_t(std::find(files.begin(), files.end(), shard) - files.begin());
      const StTensor* t = c.files_[fi]->find(name);
      if (!t)
        fail(Status::kFormatError,
             "index '" + path + "' maps '" + name + "' to shard '" + shard + "', which does not hold it");
      c.by_name_[name] = t;
    }
  } else {
    c.files_.push_back(SafetensorsFile::open(path));
    for (auto& t : c.files_[0]->tensors()) c.by_name_[t.name] = &t;
  }
  return c;
}

const StTensor* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const StTensor& Checkpoint::require(const std::string& name) const {
  const StTensor* t = find(name);
  if (!t) fail(Status::kFormatError, "checkpoint has no tensor named '" + name + "'");
  return *t;
}

std::vector<std::string> Checkpoint::names_with_prefix(const std::string& prefix) const {
  std::vector<std::string> v;
  for (auto& [n, t] : by_name_)
    if (n.compare(0, prefix.size(), prefix) == 0) v.push_back(n);
  return v;
}

}  // namespace clq
