#include "host/io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "host/io/text.h"
#include "runtime/status.h"

namespace clq {

namespace {

constexpr GgmlTypeInfo kTypes[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},        {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},     {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},  {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18}, {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82}, {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},       {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},     {34, "TQ1_0", 256, 54},  {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
};

constexpr uint32_t kMaxArrayDepth = 8;  // GGUF files use 1; the cap keeps a hostile file's recursion short
constexpr uint32_t kMaxDims = 4;        // ggml's GGML_MAX_DIMS

[[noreturn]] void bad(const std::string& label, const std::string& msg) {
  fail(Status::kFormatError, "GGUF file '" + label + "': " + msg);
}

const char* value_type_name(uint32_t t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                "u64", "i64", "f64"};
  return t < 13 ? names[t] : "unknown";
}

// Fixed byte size of a scalar value type, 0 for string/array/unknown.
size_t scalar_bytes(uint32_t t) {
  switch (GgufValueType(t)) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64: return 8;
    default: return 0;
  }
}

// A cursor that never reads past the end: every read checks what is left first, so a length or
// count from the file is compared with the bytes that could hold it before anything is sized by it.
class Reader {
 public:
  Reader(const uint8_t* b, size_t n, const std::string& label) : b_(b), n_(n), label_(label) {}
  size_t pos() const { return p_; }
  size_t left() const { return n_ - p_; }
  void need(size_t k, const std::string& what) const {
    if (k > left())
      bad(label_, what + " needs " + std::to_string(k) + " bytes at offset " + std::to_string(p_) + ", but the file has " +
                      std::to_string(left()) + " left");
  }
  uint64_t uint(size_t k, const std::string& what) {
    need(k, what);
    uint64_t v = 0;
    for (size_t i = 0; i < k; ++i) v |= uint64_t(b_[p_ + i]) << (8 * i);
    p_ += k;
    return v;
  }
  uint32_t u32(const std::string& what) { return uint32_t(uint(4, what)); }
  uint64_t u64(const std::string& what) { return uint(8, what); }
  std::string str(const std::string& what) {
    const uint64_t len = u64(what + " length");
    if (len > left())
      bad(label_, what + " length " + std::to_string(len) + " at offset " + std::to_string(p_ - 8) +
                      " runs past the end of the file (" + std::to_string(left()) + " bytes left)");
    const unsigned char* s = b_ + p_;
    if (size_t at = invalid_utf8_at(s, size_t(len)); at != std::string::npos)
      bad(label_, what + " is not valid UTF-8: byte " + hex_byte(s[at]) + " at offset " + std::to_string(p_ + at));
    if (std::memchr(s, 0, size_t(len))) bad(label_, what + " at offset " + std::to_string(p_) + " holds a NUL byte");
    std::string out(reinterpret_cast<const char*>(s), size_t(len));
    p_ += size_t(len);
    return out;
  }
  void skip(size_t k, const std::string& what) {
    need(k, what);
    p_ += k;
  }

 private:
  const uint8_t* b_;
  size_t n_;
  size_t p_ = 0;
  const std::string& label_;
};

double scalar_number(Reader& r, uint32_t t, GgufValue* v, const std::string& what) {
  switch (GgufValueType(t)) {
    case GgufValueType::kU8: case GgufValueType::kU16: case GgufValueType::kU32: case GgufValueType::kU64:
    case GgufValueType::kBool:  // range-checked by read_value
      v->u = r.uint(scalar_bytes(t), what);
      return double(v->u);
    case GgufValueType::kI8: case GgufValueType::kI16: case GgufValueType::kI32: case GgufValueType::kI64: {
      const size_t k = scalar_bytes(t);
      uint64_t u = r.uint(k, what);
      if (k < 8 && (u >> (8 * k - 1)) & 1) u |= ~uint64_t(0) << (8 * k);  // sign-extend
      std::memcpy(&v->i, &u, 8);
      return double(v->i);
    }
    case GgufValueType::kF32: {
      uint32_t u = uint32_t(r.uint(4, what));
      float f;
      std::memcpy(&f, &u, 4);
      v->f = f;
      return v->f;
    }
    case GgufValueType::kF64: {
      uint64_t u = r.uint(8, what);
      std::memcpy(&v->f, &u, 8);
      return v->f;
    }
    default:
      return 0;
  }
}

void read_value(Reader& r, uint32_t t, GgufValue* v, const std::string& what, const std::string& label, uint32_t depth) {
  if (t > uint32_t(GgufValueType::kF64))
    bad(label, what + " has unknown value type " + std::to_string(t) + " (known: 0 to 12)");
  v->type = GgufValueType(t);
  if (v->type == GgufValueType::kString) {
    v->s = r.str(what);
    return;
  }
  if (v->type == GgufValueType::kBool) {
    v->u = r.uint(1, what);
    if (v->u > 1) bad(label, what + " is a bool stored as " + std::to_string(v->u) + " (must be 0 or 1)");
    return;
  }
  if (v->type != GgufValueType::kArray) {
    scalar_number(r, t, v, what);
    return;
  }
  if (depth >= kMaxArrayDepth)
    bad(label, what + " nests arrays deeper than " + std::to_string(kMaxArrayDepth));
  const uint32_t et = r.u32(what + " element type");
  if (et > uint32_t(GgufValueType::kF64))
    bad(label, what + " is an array of unknown value type " + std::to_string(et) + " (known: 0 to 12)");
  v->elem = GgufValueType(et);
  v->count = r.u64(what + " element count");
  // Each element takes at least one byte (strings and arrays at least 8): a count the remaining
  // bytes cannot hold is refused before the loop.
  const size_t min_bytes = scalar_bytes(et) ? scalar_bytes(et) : 8;
  if (v->count > r.left() / min_bytes)
    bad(label, what + " claims " + std::to_string(v->count) + " elements of " + value_type_name(et) +
                   ", more than the " + std::to_string(r.left()) + " bytes left can hold");
  const bool numeric = scalar_bytes(et) > 0 && v->elem != GgufValueType::kBool;
  if (numeric) v->numbers.reserve(size_t(v->count));
  for (uint64_t i = 0; i < v->count; ++i) {
    if (numeric) {
      GgufValue e;
      v->numbers.push_back(scalar_number(r, et, &e, what));
    } else {
      GgufValue e;
      read_value(r, et, &e, what + "[" + std::to_string(i) + "]", label, depth + 1);
    }
  }
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > UINT64_MAX / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  for (auto& t : kTypes)
    if (t.id == type) return &t;
  return nullptr;
}

const char* ggml_type_name(uint32_t type) {
  if (auto* t = ggml_type_info(type)) return t->name;
  static thread_local std::string s;
  s = "type " + std::to_string(type);
  return s.c_str();
}

std::string GgufTensor::dims_str() const {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

bool looks_like_gguf(const uint8_t* base, size_t size) {
  return size >= 4 && std::memcmp(base, "GGUF", 4) == 0;
}

size_t ggml_tensor_bytes(uint32_t type, const std::vector<int64_t>& ne) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  if (!ti) fail(Status::kInvalidArgument, std::string("unknown ggml type ") + ggml_type_name(type));
  if (ne.empty() || ne.size() > kMaxDims)
    fail(Status::kInvalidArgument, "a tensor has 1 to 4 dims, not " + std::to_string(ne.size()));
  for (auto d : ne)
    if (d < 1) fail(Status::kInvalidArgument, "tensor dims must be >= 1, not " + std::to_string(d));
  if (ne[0] % ti->block != 0)
    fail(Status::kInvalidArgument, std::string("a ") + ti->name + " row holds whole blocks of " +
                                       std::to_string(ti->block) + " values; ne[0] = " + std::to_string(ne[0]) + " is not");
  uint64_t bytes = 0;
  if (!mul_ok(uint64_t(ne[0] / ti->block), uint64_t(ti->block_bytes), &bytes))
    fail(Status::kInvalidArgument, "tensor byte size overflows 64 bits");
  for (size_t i = 1; i < ne.size(); ++i)
    if (!mul_ok(bytes, uint64_t(ne[i]), &bytes)) fail(Status::kInvalidArgument, "tensor byte size overflows 64 bits");
  if (bytes > SIZE_MAX) fail(Status::kInvalidArgument, "tensor byte size does not fit in memory");
  return size_t(bytes);
}

GgufFile::Parsed parse_gguf(const uint8_t* base, size_t size, const std::string& label) {
  Reader r(base, size, label);
  if (size < 4 || !looks_like_gguf(base, size)) {
    // A safetensors file starts with its header length and then '{'.
    if (size >= 9 && base[8] == '{')
      bad(label, "this is a safetensors file (a header length, then '{'), not GGUF");
    bad(label, "does not start with the magic 'GGUF'");
  }
  r.skip(4, "magic");
  GgufFile::Parsed out;
  out.version = r.u32("version");
  if (out.version != 2 && out.version != 3)
    bad(label, "version " + std::to_string(out.version) + " is not supported (2 and 3 are; version 1 used 32-bit counts)");
  const uint64_t n_tensors = r.u64("tensor count");
  const uint64_t n_kv = r.u64("metadata count");
  // The smallest key/value is 8 (key length) + 1 (key) + 4 (type) + 1 (u8) bytes; the smallest
  // tensor info 8 + 1 + 4 + 8 + 4 + 8.
  if (n_kv > r.left() / 14)
    bad(label, "metadata count " + std::to_string(n_kv) + " is more than the " + std::to_string(r.left()) +
                   " bytes left can hold");
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string what = "metadata key " + std::to_string(k);
    std::string key = r.str(what);
    if (key.empty()) bad(label, what + " is empty");
    const uint32_t t = r.u32("type of metadata " + quote_name(key));
    GgufValue v;
    read_value(r, t, &v, "metadata " + quote_name(key), label, 0);
    if (out.metadata.count(key)) bad(label, "metadata key " + quote_name(key) + " appears twice");
    out.metadata.emplace(std::move(key), std::move(v));
  }
  if (auto it = out.metadata.find("general.alignment"); it != out.metadata.end()) {
    const GgufValue& a = it->second;
    if (a.type != GgufValueType::kU32)
      bad(label, std::string("general.alignment must be a u32, not ") + value_type_name(uint32_t(a.type)));
    if (a.u == 0 || (a.u & (a.u - 1)) != 0)
      bad(label, "general.alignment " + std::to_string(a.u) + " is not a power of two");
    out.alignment = a.u;
  }
  if (n_tensors > r.left() / 33)
    bad(label, "tensor count " + std::to_string(n_tensors) + " is more than the " + std::to_string(r.left()) +
                   " bytes left can hold");
  out.tensors.reserve(size_t(n_tensors));
  std::map<std::string, size_t> seen;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = r.str("tensor " + std::to_string(k) + " name");
    if (t.name.empty()) bad(label, "tensor " + std::to_string(k) + " has an empty name");
    const std::string who = "tensor " + quote_name(t.name);
    if (seen.count(t.name)) bad(label, who + " appears twice");
    seen[t.name] = size_t(k);
    const uint32_t nd = r.u32(who + " dim count");
    if (nd < 1 || nd > kMaxDims) bad(label, who + " has " + std::to_string(nd) + " dims (1 to 4 allowed)");
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t v = r.u64(who + " dim");
      if (v < 1 || v > uint64_t(INT64_MAX))
        bad(label, who + " dim " + std::to_string(d) + " is " + std::to_string(v) + " (must be >= 1)");
      t.ne.push_back(int64_t(v));
    }
    t.type = r.u32(who + " type");
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti) bad(label, who + " has unknown ggml type " + std::to_string(t.type));
    if (t.ne[0] % ti->block != 0)
      bad(label, who + " is " + ti->name + " with rows of " + std::to_string(t.ne[0]) + " values, not a multiple of its " +
                     std::to_string(ti->block) + "-value blocks");
    try {
      t.nbytes = ggml_tensor_bytes(t.type, t.ne);
    } catch (const Error&) {
      bad(label, who + " " + t.dims_str() + " of " + ti->name + ": its byte size overflows");
    }
    t.offset = r.u64(who + " offset");
    if (t.offset % out.alignment != 0)
      bad(label, who + " offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                     std::to_string(out.alignment));
    out.tensors.push_back(std::move(t));
  }
  // The data section starts at the next multiple of the alignment.
  const uint64_t hdr = r.pos();
  const uint64_t data_start = (hdr + out.alignment - 1) / out.alignment * out.alignment;
  if (data_start > size && !out.tensors.empty())
    bad(label, "the data section would start at " + std::to_string(data_start) + ", past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const uint64_t data_bytes = data_start <= size ? size - data_start : 0;
  std::vector<size_t> order(out.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (auto& t : out.tensors) {
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
      bad(label, "tensor " + quote_name(t.name) + " at data offset " + std::to_string(t.offset) + " with " +
                     std::to_string(t.nbytes) + " bytes runs past the end of the data section (" +
                     std::to_string(data_bytes) + " bytes)");
    t.data = base + data_start + t.offset;
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return out.tensors[a].offset < out.tensors[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& p = out.tensors[order[i - 1]];
    const GgufTensor& q = out.tensors[order[i]];
    if (p.offset + p.nbytes > q.offset)
      bad(label, "tensors " + quote_name(p.name) + " and " + quote_name(q.name) + " overlap in the data section");
  }
  return out;
}

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->map_ = MappedFile::open(path, "GGUF file");
  f->path_ = path;
  f->id_ = f->map_->id();
  Parsed p = parse_gguf(f->map_->data(), f->map_->size(), path);
  f->version_ = p.version;
  f->alignment_ = p.alignment;
  f->tensors_ = std::move(p.tensors);
  f->metadata_ = std::move(p.metadata);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

GgufFile::~GgufFile() = default;

const GgufTensor* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

// ---- writer ----

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  kv_.push_back({key, GgufValueType::kString, value, 0});
}
void GgufWriter::add_u32(const std::string& key, uint32_t value) { kv_.push_back({key, GgufValueType::kU32, "", value}); }

void GgufWriter::add_tensor(const std::string& name, uint32_t type, const std::vector<int64_t>& ne,
                            std::vector<uint8_t> bytes) {
  const size_t want = ggml_tensor_bytes(type, ne);
  if (bytes.size() != want)
    fail(Status::kInvalidArgument, "GGUF tensor '" + name + "': " + std::to_string(bytes.size()) +
                                       " bytes given, its type and dims need " + std::to_string(want));
  tensors_.push_back({name, type, ne, std::move(bytes)});
}

std::vector<uint8_t> GgufWriter::image() const {
  std::vector<uint8_t> o;
  auto put = [&](uint64_t v, int k) {
    for (int i = 0; i < k; ++i) o.push_back(uint8_t(v >> (8 * i)));
  };
  auto put_str = [&](const std::string& s) {
    put(s.size(), 8);
    o.insert(o.end(), s.begin(), s.end());
  };
  uint64_t align = 32;
  for (auto& kv : kv_)
    if (kv.key == "general.alignment") align = kv.u;
  o.insert(o.end(), {'G', 'G', 'U', 'F'});
  put(3, 4);
  put(tensors_.size(), 8);
  put(kv_.size(), 8);
  for (auto& kv : kv_) {
    put_str(kv.key);
    put(uint32_t(kv.type), 4);
    if (kv.type == GgufValueType::kString)
      put_str(kv.s);
    else
      put(kv.u, 4);
  }
  uint64_t off = 0;
  std::vector<uint64_t> offs;
  for (auto& t : tensors_) {
    put_str(t.name);
    put(t.ne.size(), 4);
    for (auto d : t.ne) put(uint64_t(d), 8);
    put(t.type, 4);
    put(off, 8);
    offs.push_back(off);
    off = (off + t.bytes.size() + align - 1) / align * align;
  }
  while (o.size() % align) o.push_back(0);
  const size_t data = o.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    o.resize(data + offs[i], 0);
    o.insert(o.end(), tensors_[i].bytes.begin(), tensors_[i].bytes.end());
  }
  return o;
}

void GgufWriter::write(const std::string& path, const std::vector<FileId>& inputs) const {
  const std::vector<uint8_t> img = image();
  write_file_atomic(path, {{img.data(), img.size()}}, inputs);
}

}  // namespace clq
