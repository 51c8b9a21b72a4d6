// GGUF (v2 and v3) reading, memory-mapped and validated as strictly as the safetensors reader,
// plus a small writer for synthetic files. Layout: magic "GGUF", version, tensor count,
// metadata count (u64 each from v2), the metadata key/value pairs, the tensor infos (name,
// dims innermost first, ggml type, offset), padding to `general.alignment` (default 32), then
// the data section where each tensor's offset points.
//
// Validation, each with its own message (the full list: docs/robustness.md): magic (a
// safetensors file given here is named as one), version 2 or 3, every length, count and
// offset checked against the bytes that are left before it is used (a count cannot make the
// reader allocate more than the file could describe), strings valid UTF-8 without NUL, keys
// and tensor names unique and non-empty, value types known, arrays not nested deeper than 8,
// `general.alignment` a u32 power of two, 1 to 4 dims each >= 1 with the product overflow-
// checked, ggml type known, the innermost dim a whole number of the type's blocks, offsets
// aligned, tensors inside the data section and not overlapping. Linear in the file's header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/safe_file.h"

namespace clq {

// ggml tensor types (the numbering is the file format's).
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15, kBF16 = 30,
};
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int block;        // values per block
  int block_bytes;  // bytes per block
};
// nullptr for a type number this reader does not know (the file is then refused).
const GgmlTypeInfo* ggml_type_info(uint32_t type);
const char* ggml_type_name(uint32_t type);  // "Q4_K", or "type 99"

enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value. Scalars are kept; an array keeps its element type and count, and its
// elements only when they are numbers (strings of a tokenizer can run to hundreds of thousands).
struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  uint64_t u = 0;     // unsigned integers and bool
  int64_t i = 0;      // signed integers
  double f = 0;       // floats
  std::string s;      // strings
  GgufValueType elem = GgufValueType::kU8;  // arrays
  uint64_t count = 0;
  std::vector<double> numbers;  // numeric array elements
};

struct GgufTensor {
  std::string name;
  uint32_t type = 0;           // GgmlType number
  std::vector<int64_t> ne;     // dims, innermost first (ne[0] is the row length)
  uint64_t offset = 0;         // from the start of the data section
  const uint8_t* data = nullptr;  // into the mapping; valid while the file object lives
  size_t nbytes = 0;
  std::string dims_str() const;  // "[4096, 14336]" (innermost first, as the file stores them)
};

class GgufFile {
 public:
  // Maps and validates `path`; throws FormatError naming the rule and the values, IoError if unreadable.
  static std::shared_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(const std::string& name) const;
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* meta(const std::string& key) const;
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  const FileId& id() const { return id_; }

  struct Parsed {
    uint32_t version = 0;
    uint64_t alignment = 32;
    std::vector<GgufTensor> tensors;
    std::map<std::string, GgufValue> metadata;
  };

 private:
  GgufFile() = default;
  std::string path_;
  FileId id_;
  std::unique_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, GgufValue> metadata_;
};

// Parses and validates a whole GGUF image in memory (used by open() and the tests). `base` must
// outlive the returned tensors.
GgufFile::Parsed parse_gguf(const uint8_t* base, size_t size, const std::string& label);

// True when the bytes start with the GGUF magic.
bool looks_like_gguf(const uint8_t* base, size_t size);

// A GGUF v3 writer for synthetic files and tests: string and u32 metadata, tensors given as raw
// block bytes. Written atomically (runtime/safe_file.h), never over an input.
class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);
  // ne innermost first; `bytes` must be exactly the size the type and dims give.
  void add_tensor(const std::string& name, uint32_t type, const std::vector<int64_t>& ne, std::vector<uint8_t> bytes);
  void write(const std::string& path, const std::vector<FileId>& inputs = {}) const;
  std::vector<uint8_t> image() const;  // the whole file in memory

 private:
  struct Kv {
    std::string key;
    GgufValueType type;
    std::string s;
    uint32_t u = 0;
  };
  struct T {
    std::string name;
    uint32_t type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> bytes;
  };
  std::vector<Kv> kv_;
  std::vector<T> tensors_;
};

// Bytes a tensor of `type` with dims `ne` takes, or throws InvalidArgument (unknown type, a row
// that is not whole blocks, overflow).
size_t ggml_tensor_bytes(uint32_t type, const std::vector<int64_t>& ne);

}  // namespace clq
