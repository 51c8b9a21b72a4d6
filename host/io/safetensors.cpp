#include "host/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

#include "host/io/gguf.h"
#include "host/io/json_file.h"
#include "host/io/text.h"
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
    {StDType::kF8E8M0, "F8_E8M0", 1},  // unsigned power-of-two scales (DeepSeek-V3 ue8m0)
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

// ---- the header: a strict, linear-time JSON reader for exactly the safetensors schema ----------
//
// Why not a general JSON library: the reference (Rust safetensors + serde) rejects what a lenient
// parser accepts (a byte-order mark, bytes after the object, a field repeated inside an entry),
// and a DOM of a hostile header costs memory and, with callbacks, quadratic time. This reader
// makes one pass, keeps nothing but the tensors, caps nesting, and never prints a value it has
// not bounded.
namespace {
constexpr int kMaxDepth = 64;         // nesting allowed inside unknown fields (the schema needs 3)
constexpr size_t kQuoteBytes = 120;   // names longer than this are cut in messages

}  // namespace

// Quotes a name for a message, cut to kQuoteBytes at a UTF-8 boundary.
std::string quote_name(const std::string& s) {
  if (s.size() <= kQuoteBytes) return "'" + s + "'";
  size_t n = kQuoteBytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return "'" + s.substr(0, n) + "...' (" + std::to_string(s.size()) + " bytes)";
}

std::string hex_byte(unsigned char c) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02X", c);
  return b;
}

// Offset of the first byte that breaks strict UTF-8 (overlong forms, surrogates, code points
// above U+10FFFF, truncated sequences), or npos.
size_t invalid_utf8_at(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

namespace {
void append_utf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(char(cp));
  } else if (cp < 0x800) {
    out->push_back(char(0xC0 | (cp >> 6)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(char(0xE0 | (cp >> 12)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(char(0xF0 | (cp >> 18)));
    out->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(char(0x80 | (cp & 0x3F)));
  }
}

class HeaderReader {
 public:
  HeaderReader(const char* p, size_t n, const std::string& label) : beg_(p), p_(p), end_(p + n), label_(label) {}

  [[noreturn]] void error(const std::string& msg) const {
    bad(label_, msg + " (header byte " + std::to_string(p_ - beg_) + ")");
  }
  bool at_end() const { return p_ == end_; }
  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  char peek() const { return p_ == end_ ? '\0' : *p_; }
  // What the next value is, for messages ("an array"), never the value itself.
  const char* kind() const {
    switch (peek()) {
      case '{': return "an object";
      case '[': return "an array";
      case '"': return "a string";
      case 't': case 'f': return "a boolean";
      case 'n': return "null";
      default: return (peek() == '-' || (peek() >= '0' && peek() <= '9')) ? "a number" : "not a JSON value";
    }
  }
  void expect(char c, const char* where) {
    ws();
    if (p_ == end_) error(std::string("header is not valid JSON: it ends where '") + c + "' is expected " + where);
    if (*p_ != c)
      error(std::string("header is not valid JSON: expected '") + c + "' " + where + ", found " +
            (std::isprint(static_cast<unsigned char>(*p_)) ? "'" + std::string(1, *p_) + "'"
                                                           : hex_byte(static_cast<unsigned char>(*p_))));
    ++p_;
  }
  // After '{' or '[': true when the container closes at once.
  bool empty_close(char close) {
    ws();
    if (peek() == close) {
      ++p_;
      return true;
    }
    return false;
  }
  // After a member: true for ',', false for the closing bracket.
  bool more(char close, const char* where) {
    ws();
    if (peek() == ',') {
      ++p_;
      return true;
    }
    expect(close, where);
    return false;
  }

  std::string string(const char* where) {
    expect('"', where);
    std::string out;
    for (;;) {
      if (p_ == end_) error("header is not valid JSON: a string is not closed");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return out;
      }
      if (c < 0x20) error("header is not valid JSON: control byte " + hex_byte(c) + " inside a string");
      if (c != '\\') {
        out.push_back(char(c));
        ++p_;
        continue;
      }
      ++p_;
      if (p_ == end_) error("header is not valid JSON: a string is not closed");
      const char e = *p_++;
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error("header is not valid JSON: lone trailing surrogate \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u')
              error("header is not valid JSON: lone leading surrogate \\u escape");
            p_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("header is not valid JSON: lone leading surrogate \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(&out, cp);
          break;
        }
        default:
          --p_;
          error("header is not valid JSON: unknown escape in a string");
      }
    }
  }

  // A JSON number, checked against the grammar; returns its text.
  std::string number() {
    const char* s = p_;
    if (peek() == '-') ++p_;
    if (peek() == '0') {
      ++p_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++p_;
    } else {
      error("header is not valid JSON: malformed number");
    }
    if (peek() == '.') {
      ++p_;
      if (!(peek() >= '0' && peek() <= '9')) error("header is not valid JSON: malformed number");
      while (peek() >= '0' && peek() <= '9') ++p_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++p_;
      if (peek() == '+' || peek() == '-') ++p_;
      if (!(peek() >= '0' && peek() <= '9')) error("header is not valid JSON: malformed number");
      while (peek() >= '0' && peek() <= '9') ++p_;
    }
    return std::string(s, p_);
  }

  // A non-negative integer literal that fits 64 bits; `what` names it in the message.
  uint64_t uint(const std::string& what) {
    ws();
    const char* k = kind();
    if (std::strcmp(k, "a number") != 0) {
      if (std::strcmp(k, "not a JSON value") == 0) error("header is not valid JSON: " + what + " is not a JSON value");
      error(what + " is " + k + ", not a non-negative integer");
    }
    const char* at = p_;
    std::string lit = number();
    bool digits = !lit.empty() && lit.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) {
      p_ = at;
      error(what + " = " + (lit.size() > 40 ? lit.substr(0, 40) + "..." : lit) + " is not a non-negative integer");
    }
    uint64_t v = 0;
    for (char c : lit) {
      const uint64_t d = uint64_t(c - '0');
      if (v > (UINT64_MAX - d) / 10) {
        p_ = at;
        error(what + " = " + (lit.size() > 40 ? lit.substr(0, 40) + "..." : lit) + " does not fit 64 bits");
      }
      v = v * 10 + d;
    }
    return v;
  }

  // Any JSON value, validated and dropped; `depth` is the nesting of its container.
  void skip_value(int depth) {
    ws();
    switch (peek()) {
      case '{':
        if (depth + 1 > kMaxDepth) error("header nests deeper than " + std::to_string(kMaxDepth) + " levels");
        ++p_;
        if (empty_close('}')) return;
        do {
          string("for a key");
          expect(':', "after a key");
          skip_value(depth + 1);
        } while (more('}', "after an object member"));
        return;
      case '[':
        if (depth + 1 > kMaxDepth) error("header nests deeper than " + std::to_string(kMaxDepth) + " levels");
        ++p_;
        if (empty_close(']')) return;
        do skip_value(depth + 1);
        while (more(']', "after an array element"));
        return;
      case '"':
        string("for a string");
        return;
      case 't': literal("true"); return;
      case 'f': literal("false"); return;
      case 'n': literal("null"); return;
      default:
        if (p_ == end_) error("header is not valid JSON: it ends where a value is expected");
        number();
    }
  }

 private:
  uint32_t hex4() {
    if (end_ - p_ < 4) error("header is not valid JSON: truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else error("header is not valid JSON: bad hex digit in a \\u escape");
    }
    return v;
  }
  void literal(const char* w) {
    const size_t n = std::strlen(w);
    if (size_t(end_ - p_) < n || std::memcmp(p_, w, n) != 0) error("header is not valid JSON: unknown literal");
    p_ += n;
  }

  const char* beg_;
  const char* p_;
  const char* end_;
  const std::string& label_;
};

struct RawEntry {
  StTensor t;
  uint64_t b = 0, e = 0;
};

// One tensor entry: {"dtype": s, "shape": [u...], "data_offsets": [u, u]}; unknown fields are
// skipped (as the reference does), repeated ones are errors.
RawEntry read_entry(HeaderReader& r, const std::string& name) {
  RawEntry out;
  out.t.name = name;
  const std::string who = "tensor " + quote_name(name);
  r.ws();
  if (r.peek() != '{') {
    if (r.at_end()) r.error("header is not valid JSON: it ends where entry " + quote_name(name) + " is expected");
    r.error("entry " + quote_name(name) + " is " + r.kind() + ", not an object");
  }
  r.expect('{', "");
  bool has_dtype = false, has_shape = false, has_offsets = false;
  std::string dts;
  if (!r.empty_close('}')) {
    do {
      std::string field = r.string("for a field name");
      r.expect(':', "after a field name");
      bool* seen = field == "dtype" ? &has_dtype : field == "shape" ? &has_shape
                                                 : field == "data_offsets" ? &has_offsets : nullptr;
      if (seen && *seen) r.error(who + " has field '" + field + "' twice");
      if (seen) *seen = true;
      r.ws();
      if (field == "dtype") {
        if (r.peek() != '"') r.error(who + " has no dtype string: dtype is " + r.kind());
        dts = r.string("");
        if (!st_dtype_from_name(dts, &out.t.dtype)) r.error(who + " has unknown dtype " + quote_name(dts));
      } else if (field == "shape") {
        if (r.peek() != '[') r.error(who + " has no shape list: shape is " + r.kind());
        r.expect('[', "");
        if (!r.empty_close(']')) {
          do {
            const std::string what = who + " shape entry " + std::to_string(out.t.shape.size());
            uint64_t d = r.uint(what);
            if (d > uint64_t(INT64_MAX)) r.error(what + " = " + std::to_string(d) + " is above 2^63 - 1");
            out.t.shape.push_back(int64_t(d));
          } while (r.more(']', "after a shape entry"));
        }
      } else if (field == "data_offsets") {
        if (r.peek() != '[') r.error(who + " data_offsets is not [begin, end] of non-negative integers");
        r.expect('[', "");
        std::vector<uint64_t> v;
        if (!r.empty_close(']')) {
          do {
            if (v.size() == 2) r.error(who + " data_offsets is not [begin, end]: it has more than 2 entries");
            v.push_back(r.uint(who + " data_offsets entry " + std::to_string(v.size())));
          } while (r.more(']', "after a data_offsets entry"));
        }
        if (v.size() != 2)
          r.error(who + " data_offsets is not [begin, end] of non-negative integers: it has " +
                  std::to_string(v.size()) + " entries");
        out.b = v[0];
        out.e = v[1];
      } else {
        r.skip_value(2);
      }
    } while (r.more('}', "after a field of a tensor entry"));
  }
  if (!has_dtype) r.error(who + " has no dtype string");
  if (!has_shape) r.error(who + " has no shape list");
  if (!has_offsets) r.error(who + " data_offsets is not [begin, end] of non-negative integers: it is missing");
  return out;
}
}  // namespace

void parse_safetensors(const uint8_t* base, size_t size, const std::string& label, std::vector<StTensor>* tensors,
                       std::map<std::string, std::string>* metadata) {
  if (size < 8) bad(label, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  // Without this a GGUF file's magic and version read as a 14-billion-byte header length.
  if (looks_like_gguf(base, size))
    bad(label, "this is a GGUF file (it starts with the magic 'GGUF'), not safetensors; clquant reads GGUF layers "
               "where a checkpoint is expected (--weights model.gguf)");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= uint64_t(base[i]) << (8 * i);  // little-endian u64
  if (hlen > SafetensorsFile::kMaxHeaderBytes)
    bad(label, "header length " + std::to_string(hlen) + " exceeds the 100 MB limit");
  if (hlen > size - 8)
    bad(label, "header length " + std::to_string(hlen) + " runs past the end of the file (" + std::to_string(size) +
                   " bytes)");
  if (hlen < 2) bad(label, "header length " + std::to_string(hlen) + " is too short for a JSON object");
  const unsigned char* h = base + 8;
  if (hlen >= 3 && h[0] == 0xEF && h[1] == 0xBB && h[2] == 0xBF)
    bad(label, "header starts with a UTF-8 byte-order mark; the format forbids it");
  if (size_t bad_at = invalid_utf8_at(h, size_t(hlen)); bad_at != std::string::npos)
    bad(label, "header is not valid UTF-8: byte " + hex_byte(h[bad_at]) + " at header byte " + std::to_string(bad_at));
  if (h[0] != '{')
    bad(label, "header is not a JSON object: it must start with '{', found " +
                   (std::isprint(h[0]) ? "'" + std::string(1, char(h[0])) + "'" : hex_byte(h[0])));

  HeaderReader r(reinterpret_cast<const char*>(h), size_t(hlen), label);
  std::vector<RawEntry> entries;
  std::unordered_set<std::string> names;
  bool seen_metadata = false;
  std::map<std::string, std::string> meta;
  r.expect('{', "");
  if (!r.empty_close('}')) {
    do {
      std::string name = r.string("for a tensor name");
      r.expect(':', "after a tensor name");
      if (name == "__metadata__") {
        if (seen_metadata) r.error("__metadata__ appears twice in the header");
        seen_metadata = true;
        r.ws();
        if (r.peek() != '{') r.error(std::string("__metadata__ is ") + r.kind() + ", not an object");
        r.expect('{', "");
        if (!r.empty_close('}')) {
          do {
            std::string k = r.string("for a __metadata__ key");
            r.expect(':', "after a __metadata__ key");
            r.ws();
            if (r.peek() != '"')
              r.error("__metadata__ value for " + quote_name(k) + " is " + r.kind() + ", not a string");
            std::string v = r.string("");
            if (!meta.emplace(k, std::move(v)).second) r.error("__metadata__ key " + quote_name(k) + " appears twice");
          } while (r.more('}', "after a __metadata__ member"));
        }
        continue;
      }
      if (!names.insert(name).second) r.error("tensor name " + quote_name(name) + " appears twice in the header");
      entries.push_back(read_entry(r, name));
    } while (r.more('}', "after a tensor entry"));
  }
  // The reference writer pads with spaces; anything else after the object (a NUL, a second
  // object) is a different file than the one a reader of the JSON would see.
  r.ws();
  if (!r.at_end())
    r.error("header has bytes after the JSON object (" + hex_byte(static_cast<unsigned char>(r.peek())) +
            "); only spaces may pad it");

  const uint64_t data_size = size - 8 - hlen;
  struct Span {
    uint64_t b, e;
    size_t idx;
  };
  std::vector<Span> spans;
  spans.reserve(entries.size());
  tensors->clear();
  tensors->reserve(entries.size());
  for (auto& en : entries) {
    StTensor& t = en.t;
    const std::string who = "tensor " + quote_name(t.name);
    // Element count with every factor checked; zero dimensions are left out of the check, so a
    // [2^62, 2^62, 0] shape (empty, but poison for any later arithmetic on its dims) is refused.
    uint64_t numel = 1, span = 1;
    bool zero = false;
    for (int64_t d : t.shape) {
      const uint64_t dim = uint64_t(d);
      if (dim == 0) {
        zero = true;
        continue;
      }
      if (span > (uint64_t(1) << 62) / dim)
        bad(label, who + " shape " + t.shape_str() + " overflows 64-bit element count");
      span *= dim;
    }
    numel = zero ? 0 : span;
    const uint64_t esize = st_dtype_size(t.dtype);
    if (span > (uint64_t(1) << 62) / esize) bad(label, who + " shape " + t.shape_str() + ": byte size overflows");
    const uint64_t nbytes = numel * esize;
    if (en.b > en.e)
      bad(label, who + " data_offsets [" + std::to_string(en.b) + ", " + std::to_string(en.e) + "] has begin > end");
    if (en.e > data_size)
      bad(label, who + " data_offsets end " + std::to_string(en.e) + " is past the data section (" +
                     std::to_string(data_size) + " bytes)");
    if (en.e - en.b != nbytes)
      bad(label, who + " holds " + std::to_string(en.e - en.b) + " bytes but dtype " + st_dtype_name(t.dtype) +
                     " and shape " + t.shape_str() + " need " + std::to_string(nbytes));
    t.data = base + 8 + hlen + en.b;
    t.nbytes = size_t(nbytes);
    spans.push_back({en.b, en.e, tensors->size()});
    tensors->push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.b != b.b ? a.b < b.b : a.e < b.e; });
  uint64_t pos = 0;
  for (auto& s : spans) {
    const std::string& nm = (*tensors)[s.idx].name;
    if (s.b < pos)
      bad(label, "tensor " + quote_name(nm) + " data_offsets begin " + std::to_string(s.b) +
                     " overlaps the previous tensor (ends at " + std::to_string(pos) + ")");
    if (s.b > pos)
      bad(label, "gap in the data section: bytes " + std::to_string(pos) + ".." + std::to_string(s.b) +
                     " before tensor " + quote_name(nm) + " belong to no tensor");
    pos = s.e;
  }
  if (pos != data_size)
    bad(label, "tensors cover " + std::to_string(pos) + " bytes but the data section holds " +
                   std::to_string(data_size) + " (trailing bytes belong to no tensor)");
  if (metadata) *metadata = std::move(meta);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->map_ = MappedFile::open(path, "safetensors file");
  f->path_ = path;
  f->id_ = f->map_->id();
  parse_safetensors(f->map_->data(), f->map_->size(), path, &f->tensors_, &f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;

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

std::string safetensors_header(const std::vector<StTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (auto& t : tensors) {
    h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string hs = h.dump();
  while ((8 + hs.size()) % 8) hs += ' ';  // keep tensor data 8-byte aligned, as the reference writer does
  const uint64_t n = hs.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(n >> (8 * i)));
  return out + hs;
}

void SafetensorsWriter::write(const std::string& path, const std::vector<FileId>& inputs) const {
  std::vector<StTensor> plan;
  for (auto& e : entries_) plan.push_back(StTensor{e.name, e.dtype, e.shape, nullptr, e.bytes.size()});
  const std::string hs = safetensors_header(plan, metadata_);
  std::vector<std::pair<const void*, size_t>> pieces{{hs.data(), hs.size()}};
  for (auto& e : entries_) pieces.push_back({e.bytes.data(), e.bytes.size()});
  write_file_atomic(path, pieces, inputs);
}

SafetensorsStream::SafetensorsStream(const std::string& path, std::vector<StTensor> plan,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), plan_(std::move(plan)), file_(path) {
  const std::string hs = safetensors_header(plan_, metadata);
  file_.write(hs.data(), hs.size());
}

void SafetensorsStream::append(const StTensor& t) {
  if (next_ >= plan_.size())
    fail(Status::kInternal, "'" + path_ + "': tensor '" + t.name + "' written past the planned " +
                                std::to_string(plan_.size()) + " tensors");
  const StTensor& want = plan_[next_];
  if (t.name != want.name || t.dtype != want.dtype || t.shape != want.shape || t.nbytes != want.nbytes)
    fail(Status::kInternal, "'" + path_ + "': tensor '" + t.name + "' " + st_dtype_name(t.dtype) + " " + t.shape_str() +
                                " is not the planned '" + want.name + "' " + st_dtype_name(want.dtype) + " " +
                                want.shape_str());
  if (t.nbytes) file_.write(t.data, t.nbytes);
  ++next_;
}

void SafetensorsStream::commit(const std::vector<FileId>& inputs) {
  if (next_ != plan_.size())
    fail(Status::kInternal, "'" + path_ + "': " + std::to_string(next_) + " of " + std::to_string(plan_.size()) +
                                " planned tensors written");
  file_.commit(path_, inputs);
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

namespace {
// Whether a regular file starts with "GGUF" (a special or unreadable file answers false and is
// then refused by the safetensors open with its own message).
bool starts_with_gguf_magic(const std::string& path) {
  std::string why;
  OpenedFile of = try_open_regular_file(path, &why);
  if (of.fd < 0) return false;
  uint8_t b[4] = {0, 0, 0, 0};
  const ssize_t got = ::pread(of.fd, b, 4, 0);
  ::close(of.fd);
  return got == 4 && looks_like_gguf(b, 4);
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
    FileId index_id;
    nlohmann::json j = read_json_file(path, "index", &index_id);
    c.ids_.push_back(index_id);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(Status::kFormatError, "index '" + path + "' has no weight_map object");
    std::map<std::string, std::string> want;  // tensor -> shard
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        fail(Status::kFormatError, "index '" + path + "': weight_map entry for a tensor is " + json_kind(it.value()) +
                                       ", not a file name");
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        fail(Status::kFormatError, "index '" + path + "': shard name '" + shard + "' must be a plain file name");
      want[it.key()] = shard;
      if (std::find(files.begin(), files.end(), shard) == files.end()) files.push_back(shard);
    }
    for (auto& f : files) {
      c.files_.push_back(SafetensorsFile::open(c.dir_ + "/" + f));
      c.ids_.push_back(c.files_.back()->id());
    }
    for (auto& [name, shard] : want) {
      size_t fi = size_t(std::find(files.begin(), files.end(), shard) - files.begin());
      const StTensor* t = c.files_[fi]->find(name);
      if (!t)
        fail(Status::kFormatError,
             "index '" + path + "' maps '" + name + "' to shard '" + shard + "', which does not hold it");
      c.by_name_[name] = t;
    }
  } else if (starts_with_gguf_magic(path)) {
    c.gguf_ = GgufFile::open(path);
    c.ids_.push_back(c.gguf_->id());
  } else {
    c.files_.push_back(SafetensorsFile::open(path));
    c.ids_.push_back(c.files_.back()->id());
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

uint64_t Checkpoint::tensor_bytes(const std::string& name) const {
  if (const StTensor* t = find(name)) return t->nbytes;
  if (gguf_)
    if (const GgufTensor* g = gguf_->find(name)) return g->nbytes;
  return 0;
}

std::vector<std::string> Checkpoint::names_with_prefix(const std::string& prefix) const {
  std::vector<std::string> v;
  for (auto& [n, t] : by_name_)
    if (n.compare(0, prefix.size(), prefix) == 0) v.push_back(n);
  if (gguf_)
    for (auto& t : gguf_->tensors())
      if (t.name.compare(0, prefix.size(), prefix) == 0) v.push_back(t.name);
  return v;
}

}  // namespace clq
