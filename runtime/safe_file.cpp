#include "runtime/safe_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "runtime/status.h"

namespace clq {

namespace {
const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}
std::string dirname_of(const std::string& p) {
  auto s = p.find_last_of('/');
  return s == std::string::npos ? "." : (s == 0 ? "/" : p.substr(0, s));
}
}  // namespace

std::optional<FileId> file_id(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{uint64_t(st.st_dev), uint64_t(st.st_ino)};
}

OpenedFile try_open_regular_file(const std::string& path, std::string* why) {
  OpenedFile f;
  // O_NONBLOCK: opening a FIFO without a writer (or a tty, or some devices) would wait forever.
  // The type is then checked on the descriptor, so a name swapped after a stat() cannot slip by.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    f.error = errno;
    *why = std::strerror(errno);
    return f;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    *why = std::strerror(errno);
    ::close(fd);
    return f;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = std::string("it is ") + kind_of(st.st_mode) + ", not a regular file";
    ::close(fd);
    return f;
  }
  // Regular files ignore O_NONBLOCK for reads, but mmap and read() then behave as usual anyway;
  // clear it so nothing downstream sees EAGAIN semantics.
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  f.fd = fd;
  f.size = uint64_t(st.st_size);
  f.id = FileId{uint64_t(st.st_dev), uint64_t(st.st_ino)};
  return f;
}

OpenedFile open_regular_file(const std::string& path, const std::string& what) {
  std::string why;
  OpenedFile f = try_open_regular_file(path, &why);
  if (f.fd < 0) fail(Status::kIoError, "cannot open " + what + " '" + path + "': " + why);
  return f;
}

std::string read_regular_file(const std::string& path, const std::string& what, uint64_t max_bytes, FileId* id) {
  OpenedFile f = open_regular_file(path, what);
  if (f.size > max_bytes) {
    ::close(f.fd);
    fail(Status::kFormatError, what + " '" + path + "' is " + std::to_string(f.size) + " bytes, above the " +
                                   std::to_string(max_bytes) + "-byte limit");
  }
  std::string s(size_t(f.size), '\0');
  size_t got = 0;
  while (got < s.size()) {
    ssize_t n = ::read(f.fd, &s[got], s.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string err = n < 0 ? std::strerror(errno) : "file shrank while read";
      ::close(f.fd);
      fail(Status::kIoError, "reading " + what + " '" + path + "' failed: " + err);
    }
    got += size_t(n);
  }
  ::close(f.fd);
  if (id) *id = f.id;
  return s;
}

void check_output_path(const std::string& path, const std::vector<FileId>& inputs) {
  if (path.empty()) fail(Status::kInvalidArgument, "output path is empty");
  if (path.back() == '/') fail(Status::kInvalidArgument, "output '" + path + "' names a folder, not a file");
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;  // a new name
    fail(Status::kIoError, "cannot check output '" + path + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode))
    fail(Status::kInvalidArgument, "output '" + path + "' exists and is " + kind_of(st.st_mode) +
                                       "; clquant writes only new names or replaces regular files");
  const FileId id{uint64_t(st.st_dev), uint64_t(st.st_ino)};
  for (const FileId& in : inputs)
    if (in == id)
      fail(Status::kInvalidArgument,
           "output '" + path + "' is the same file as an input of this run; clquant never overwrites its inputs");
}

bool is_temp_file_name(const std::string& name) {
  static const std::string head = ".clq-", tail = ".tmp";  // the snprintf pattern below
  if (name.size() != head.size() + 8 + tail.size() || name.compare(0, head.size(), head) != 0 ||
      name.compare(head.size() + 8, tail.size(), tail) != 0)
    return false;
  for (size_t i = head.size(); i < head.size() + 8; ++i)
    if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return false;
  return true;
}

TempFile::TempFile(const std::string& for_path) : for_(for_path) {
  // A short name in the destination's folder: the rename stays on one file system, and the name
  // fits NAME_MAX whatever the length of the output's own name.
  const std::string dir = dirname_of(for_path);
  std::random_device rd;
  for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
    char name[32];
    std::snprintf(name, sizeof name, "/.clq-%08x.tmp", unsigned(rd()));
    tmp_ = dir + name;
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) {
    const int e = errno;
    tmp_.clear();
    fail(Status::kIoError, "cannot create a temporary file in '" + dir + "' for '" + for_path + "': " + std::strerror(e));
  }
}

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void TempFile::abandon(const std::string& msg) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  tmp_.clear();
  fail(Status::kIoError, msg);
}

void TempFile::write(const void* data, size_t n) {
  if (fd_ < 0) fail(Status::kInternal, "TempFile for '" + for_ + "': write after close");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) abandon("writing '" + for_ + "' failed: " + std::strerror(w < 0 ? errno : ENOSPC));
    p += w;
    n -= size_t(w);
    written_ += uint64_t(w);
  }
}

void TempFile::close() {
  if (fd_ < 0) return;
  const int r = ::close(fd_);
  fd_ = -1;
  if (r != 0) abandon("writing '" + for_ + "' failed: " + std::strerror(errno));
}

void TempFile::commit(const std::string& path, const std::vector<FileId>& inputs) {
  close();
  if (tmp_.empty()) fail(Status::kInternal, "TempFile for '" + for_ + "': committed twice");
  // Again just before the rename: the run may have taken minutes, and the name may have changed.
  try {
    check_output_path(path, inputs);
  } catch (...) {
    ::unlink(tmp_.c_str());
    tmp_.clear();
    throw;
  }
  if (std::rename(tmp_.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno), from = tmp_;
    ::unlink(tmp_.c_str());
    tmp_.clear();
    fail(Status::kIoError, "cannot rename '" + from + "' to '" + path + "': " + err);
  }
  tmp_.clear();
}

void write_file_atomic(const std::string& path, const std::vector<std::pair<const void*, size_t>>& pieces,
                       const std::vector<FileId>& inputs) {
  check_output_path(path, inputs);
  TempFile f(path);
  for (auto& [data, n] : pieces) f.write(data, n);
  f.commit(path, inputs);
}

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path, const std::string& what) {
  OpenedFile of = open_regular_file(path, what);
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->id_ = of.id;
  f->size_ = size_t(of.size);
  if (f->size_ > 0) {
    void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, of.fd, 0);
    if (m == MAP_FAILED) {
      const int e = errno;
      ::close(of.fd);
      fail(Status::kIoError, "cannot map " + what + " '" + path + "': " + std::strerror(e));
    }
    f->map_ = m;
  }
  ::close(of.fd);
  return f;
}

MappedFile::~MappedFile() {
  if (map_) ::munmap(map_, size_);
}

const uint8_t* MappedFile::data() const {
  static const uint8_t empty[1] = {0};
  return map_ ? static_cast<const uint8_t*>(map_) : empty;
}

}  // namespace clq
