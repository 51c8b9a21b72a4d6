// Files opened and replaced without surprises, for every path a user or a cache hands to clquant:
//  - inputs are opened only when they are regular files, and never block: open() on a FIFO waits
//    for a writer and on some devices for hardware, so the open is non-blocking and the type is
//    checked on the descriptor (fstat), not on the name;
//  - outputs are written under a short temporary name in the destination's folder (so a
//    255-byte output name still fits the file-name limit) and renamed into place, and they are
//    refused when they are the same file (st_dev, st_ino) as an input, or when the name exists
//    and is not a regular file (a symbolic link, a device, a FIFO, a folder): renaming over those
//    would replace what they point to or stand for.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clq {

struct FileId {
  uint64_t dev = 0, ino = 0;
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

// The file a path names after following symbolic links; nullopt when there is none.
std::optional<FileId> file_id(const std::string& path);

// Opens `path` read-only if it is a regular file. `what` names the file in messages ("weights
// file"). Returns the descriptor (the caller closes it), its size and identity. Throws IoError.
struct OpenedFile {
  int fd = -1;
  uint64_t size = 0;
  FileId id;
  int error = 0;  // errno of a failed open, or 0 (also 0 when the path is a special file)
};
OpenedFile open_regular_file(const std::string& path, const std::string& what);
// The same without throwing: fd -1 and `why` set when the path is absent, unreadable or special.
OpenedFile try_open_regular_file(const std::string& path, std::string* why);

// A regular file mapped read-only (the file readers' input): the bytes stay valid while the
// object lives. An empty file maps to a one-byte zero buffer so readers need no special case.
class MappedFile {
 public:
  static std::unique_ptr<MappedFile> open(const std::string& path, const std::string& what);  // IoError
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const;
  size_t size() const { return size_; }
  const FileId& id() const { return id_; }

 private:
  MappedFile() = default;
  void* map_ = nullptr;
  size_t size_ = 0;
  FileId id_;
};

// A whole regular file of at most `max_bytes` (IoError / FormatError beyond).
std::string read_regular_file(const std::string& path, const std::string& what, uint64_t max_bytes,
                              FileId* id = nullptr);

// Throws InvalidArgument when `path` cannot be an output: it is one of `inputs`, it exists and is
// not a regular file, or it ends in '/'. Called before any work, and again just before the rename.
void check_output_path(const std::string& path, const std::vector<FileId>& inputs);

// An output written in pieces (a shard streamed tensor by tensor): a temporary file
// (.clq-XXXXXXXX.tmp) in the folder of `for_path`, renamed onto its final name by commit(), and
// removed by the destructor or by a failed write unless committed. A multi-file output keeps every
// piece as a TempFile until all are written, then commits them one after the other.
class TempFile {
 public:
  explicit TempFile(const std::string& for_path);  // IoError when no temporary can be created
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  void write(const void* data, size_t n);  // IoError (disk full, ...), after removing the temporary
  void close();                            // IoError likewise; commit() closes too
  // check_output_path(path, inputs), then the rename; the temporary is gone afterwards either way.
  void commit(const std::string& path, const std::vector<FileId>& inputs);
  uint64_t written() const { return written_; }
  const std::string& temp_path() const { return tmp_; }  // "" once committed or abandoned

 private:
  [[noreturn]] void abandon(const std::string& msg);
  std::string for_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// Whether `name` (a file name, no folder) has exactly the shape of TempFile's temporaries
// (".clq-" 8 lowercase hex digits ".tmp"): what a run killed before its commit or destructor
// leaves behind, and so what a caller replacing a folder it owns may remove.
bool is_temp_file_name(const std::string& name);

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, after
// check_output_path. Throws IoError (disk full, no folder, no permission); leaves no temporary.
void write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& pieces,
                       const std::vector<FileId>& inputs);

}  // namespace clq
