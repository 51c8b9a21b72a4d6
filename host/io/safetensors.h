// safetensors reading (memory-mapped, fully validated) and writing (atomic), plus sharded
// checkpoints through model.safetensors.index.json.
//
// Validation, each with its own message (the full list: docs/robustness.md): file shorter than
// 8 bytes; header length past the end of the file or above 100 MB; header not strict UTF-8, with
// a byte-order mark, not one JSON object, or followed by anything but spaces; nesting deeper than
// 64; duplicate tensor names, fields or metadata keys; unknown dtype; shape not a list of
// non-negative 64-bit integers; data_offsets not [begin, end] with begin <= end; byte size !=
// product(shape) * dtype size (every product overflow-checked); offsets not contiguous from 0 or
// not covering the whole data section; __metadata__ not string -> string. Linear in the header.
// Files are opened only when regular (runtime/safe_file.h): a FIFO is refused, never waited on.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/safe_file.h"

namespace clq {

enum class StDType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU64, kU32, kU16, kU8, kBool, kF8E4M3, kF8E5M2, kF8E8M0 };
const char* st_dtype_name(StDType t);
size_t st_dtype_size(StDType t);
bool st_dtype_from_name(const std::string& s, StDType* out);

struct StTensor {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping; valid while the file object lives
  size_t nbytes = 0;
  int64_t numel() const;
  std::string shape_str() const;  // "[4, 8]"
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws FormatError naming the rule and the values, IoError if unreadable.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  const FileId& id() const { return id_; }  // which file was opened (outputs must differ)

  static constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

 private:
  SafetensorsFile() = default;
  std::string path_;
  FileId id_;
  std::unique_ptr<MappedFile> map_;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a whole safetensors image in memory (used by open() and the fuzz tests).
// `base` must outlive the returned tensors.
void parse_safetensors(const uint8_t* base, size_t size, const std::string& label, std::vector<StTensor>* tensors,
                       std::map<std::string, std::string>* metadata);

class SafetensorsWriter {
 public:
  void add(const std::string& name, StDType dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes to a temporary file beside `path`, then renames: a reader never sees half a file.
  // Refused (InvalidArgument) when `path` is one of `inputs` or exists and is not a regular file
  // (runtime/safe_file.h).
  void write(const std::string& path, const std::vector<FileId>& inputs = {}) const;

 private:
  struct Entry {
    std::string name;
    StDType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The bytes before the data of a safetensors file holding `tensors` in this order (their names,
// dtypes, shapes and nbytes; `data` unused) and `metadata`: the length, the JSON header, spaces
// up to a multiple of 8. SafetensorsWriter and SafetensorsStream write exactly this.
std::string safetensors_header(const std::vector<StTensor>& tensors, const std::map<std::string, std::string>& metadata);

// One safetensors file streamed to disk tensor by tensor, for outputs too large to assemble in
// memory: the header is written from `plan` (every tensor's name, dtype and shape, known before
// its bytes), then append() takes the planned tensors in order. It lives in a TempFile beside
// `path` until commit() renames it there; dropped uncommitted, it leaves nothing behind.
class SafetensorsStream {
 public:
  SafetensorsStream(const std::string& path, std::vector<StTensor> plan, const std::map<std::string, std::string>& metadata);
  // The next planned tensor's bytes; Internal when it is not the one planned (name, dtype, shape).
  void append(const StTensor& t);
  // Internal unless every planned tensor was appended; then as TempFile::commit.
  void commit(const std::vector<FileId>& inputs);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<StTensor> plan_;
  TempFile file_;
  size_t next_ = 0;
};

class GgufFile;

// A checkpoint: one .safetensors file, a model.safetensors.index.json with its shards, a folder
// holding either, or one GGUF file (told by its magic, not its name). Tensors are looked up by
// full name across shards; a GGUF file's block-quantized tensors are reached through gguf().
class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);
  const StTensor* find(const std::string& name) const;
  const StTensor& require(const std::string& name) const;  // FormatError naming the tensor if absent
  std::vector<std::string> names_with_prefix(const std::string& prefix) const;
  const std::string& dir() const { return dir_; }  // folder of the checkpoint (for quantize_config.json)
  // Every file this checkpoint read (index and shards), for the output-is-not-an-input check.
  const std::vector<FileId>& file_ids() const { return ids_; }
  // Bytes of the named tensor, safetensors or GGUF; 0 when there is none.
  uint64_t tensor_bytes(const std::string& name) const;
  // The GGUF file when the checkpoint is one, else nullptr.
  const GgufFile* gguf() const { return gguf_.get(); }

 private:
  std::shared_ptr<GgufFile> gguf_;
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const StTensor*> by_name_;
  std::vector<FileId> ids_;
};

}  // namespace clq
