#include "runtime/program_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "runtime/kernel_sources.h"
#include "runtime/safe_file.h"
#include "runtime/sha256.h"
#include "runtime/status.h"

namespace clq {

namespace {
const char kMagic[8] = {'C', 'L', 'Q', 'B', 'I', 'N', '0', '1'};

bool trace() {
  const char* t = std::getenv("CLQ_CACHE_TRACE");
  return t && *t && std::strcmp(t, "0") != 0;
}

void mkdirs(const std::string& path) {
  std::string cur;
  std::istringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    ::mkdir(cur.c_str(), 0755);
  }
}
}  // namespace

bool disk_cache_enabled() {
  const char* c = std::getenv("CLQ_CACHE");
  if (!c) return true;
  std::string v = c;
  return !(v == "off" || v == "0" || v == "OFF" || v == "false" || v == "no");
}

std::string cache_dir() {
  if (!disk_cache_enabled()) return "";
  if (const char* d = std::getenv("CLQ_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/clquant";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/clquant";
  return "/tmp/clquant-cache";
}

ProgramCache::ProgramCache(cl::Context ctx, cl::Device dev, DeviceFeatures features)
    : ctx_(std::move(ctx)), dev_(std::move(dev)), features_(std::move(features)) {}

std::string ProgramCache::key_hex(const std::string& source, const std::string& options) const {
  Sha256 h;
  auto field = [&](const std::string& s) {
    uint64_t n = s.size();
    h.update(&n, sizeof n);  // length-prefixed so fields cannot run into each other
    h.update(s);
  };
  field("clquant-program-cache/" + std::to_string(kFormatVersion));
  field(source);
  field(options);
  field(features_.device_name);
  field(features_.driver_version);
  field(features_.platform_version);
  field(features_.device_version);
  return h.hex();
}

std::string ProgramCache::disk_path(const std::string& source, const std::string& options) const {
  std::string dir = cache_dir();
  if (dir.empty()) return "";
  return dir + "/" + key_hex(source, options) + ".clbin";
}

void ProgramCache::clear_memory() {
  std::lock_guard<std::mutex> lock(mu_);
  memory_.clear();
}

cl::Program ProgramCache::get(const std::string& file, const std::string& options) {
  return get_source(file, expanded_kernel_source(file), options);
}

cl::Program ProgramCache::get_source(const std::string& label, const std::string& source,
                                     const std::string& base_options) {
  return fetch(label, source, base_options, nullptr);
}

cl::Program ProgramCache::get_patched(const std::string& file, const std::string& base_options,
                                      const PtxPatch& patch) {
  if (patch.empty()) return get(file, base_options);
  return fetch(file, expanded_kernel_source(file), base_options, &patch);
}

cl::Program ProgramCache::fetch(const std::string& label, const std::string& source, const std::string& base_options,
                                const PtxPatch* patch) {
  // CLQ_BUILD_OPTIONS adds compiler options to every build (e.g. -cl-nv-verbose, whose register
  // and spill report CLQ_BUILD_LOG=1 then prints); they are part of the cache key, as is a patch.
  std::string options = base_options;
  if (const char* extra = std::getenv("CLQ_BUILD_OPTIONS"); extra && *extra) options += std::string(" ") + extra;
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = key_hex(source, patch ? options + "\n" + patch->key() : options);
  auto it = memory_.find(key);
  if (it != memory_.end()) {
    ++stats_.memory_hits;
    return it->second;
  }
  std::string dir = cache_dir();
  std::string path = dir.empty() ? "" : dir + "/" + key + ".clbin";
  cl::Program prog;
  if (!path.empty() && load_from_disk(path, key, label, options, &prog)) {
    ++stats_.disk_hits;
    from_disk_.insert(key);
    if (trace()) std::fprintf(stderr, "[clq cache] disk hit %s (%s)\n", label.c_str(), path.c_str());
  } else {
    prog = patch ? build_patched(label, source, options, *patch) : build_from_source(label, source, options);
    ++stats_.builds;
    if (trace()) std::fprintf(stderr, "[clq cache] built %s [%s]\n", label.c_str(), options.c_str());
    if (!path.empty()) store_to_disk(path, key, prog);
  }
  memory_[key] = prog;
  return prog;
}

cl::Program ProgramCache::build_patched(const std::string& label, const std::string& source,
                                        const std::string& options, const PtxPatch& patch) {
  cl::Program first = build_from_source(label, source, options);
  std::vector<std::vector<unsigned char>> bins;
  if (first.getInfo(CL_PROGRAM_BINARIES, &bins) != CL_SUCCESS || bins.empty() || bins[0].empty())
    throw Error(Status::kBuildFailed, "kernel file '" + label + "': the driver returned no program binary to patch");
  std::string ptx(bins[0].begin(), bins[0].end());
  while (!ptx.empty() && ptx.back() == '\0') ptx.pop_back();
  const std::string patched = apply_ptx_patch(ptx, patch);
  cl::Program::Binaries pb{std::vector<unsigned char>(patched.begin(), patched.end())};
  std::vector<cl_int> bin_status;
  cl_int err = CL_SUCCESS;
  cl::Program prog(ctx_, {dev_}, pb, &bin_status, &err);
  if (err == CL_SUCCESS && !bin_status.empty() && bin_status[0] != CL_SUCCESS) err = bin_status[0];
  if (err == CL_SUCCESS) err = prog.build({dev_}, options.c_str());
  if (err != CL_SUCCESS) {
    std::string log;
    if (prog()) prog.getBuildInfo(dev_, CL_PROGRAM_BUILD_LOG, &log);
    throw Error(Status::kBuildFailed, "loading the patched PTX of kernel file '" + label + "' with options [" + options +
                                          "] failed: " + cl_error_name(err) + "\n--- build log ---\n" + log);
  }
  // CLQ_BUILD_LOG=1 prints ptxas's report of the patched program too; =ptx also the patched text.
  if (const char* show = std::getenv("CLQ_BUILD_LOG"); show && *show && std::string(show) != "0") {
    std::string log;
    prog.getBuildInfo(dev_, CL_PROGRAM_BUILD_LOG, &log);
    std::fprintf(stderr, "[clq build] %s, patched PTX [%s]\n%s\n", label.c_str(), options.c_str(), log.c_str());
    if (std::string(show) == "ptx") std::fprintf(stderr, "[clq ptx] %s\n%s\n[clq ptx end]\n", label.c_str(), patched.c_str());
  }
  return prog;
}

cl::Program ProgramCache::build_from_source(const std::string& label, const std::string& source,
                                            const std::string& options) {
  cl_int err = CL_SUCCESS;
  cl::Program prog(ctx_, source, false, &err);
  check_cl(err, "clCreateProgramWithSource(" + label + ")");
  err = prog.build({dev_}, options.c_str());
  if (err != CL_SUCCESS) {
    std::string log;
    prog.getBuildInfo(dev_, CL_PROGRAM_BUILD_LOG, &log);
    throw Error(Status::kBuildFailed, "building kernel file '" + label + "' with options [" + options +
                                          "] failed: " + cl_error_name(err) + "\n--- build log ---\n" + log);
  }
  if (const char* show = std::getenv("CLQ_BUILD_LOG"); show && *show && std::string(show) != "0") {
    std::string log;
    prog.getBuildInfo(dev_, CL_PROGRAM_BUILD_LOG, &log);
    std::fprintf(stderr, "[clq build] %s [%s]\n%s\n", label.c_str(), options.c_str(), log.c_str());
  }
  return prog;
}

bool ProgramCache::load_from_disk(const std::string& path, const std::string& key, const std::string& label,
                                  const std::string& options, cl::Program* out) {
  auto reject = [&](const std::string& why) {
    ++stats_.disk_rejected;
    if (trace()) std::fprintf(stderr, "[clq cache] rejected %s: %s\n", path.c_str(), why.c_str());
    return false;
  };
  // Never opened blocking, never trusted to be a file: a FIFO or folder at the entry's path is
  // skipped (and then left alone: the fresh build is simply not stored over it).
  std::string why;
  OpenedFile f = try_open_regular_file(path, &why);
  if (f.fd < 0) {
    if (f.error == ENOENT) return false;  // plain miss
    return reject("skipped: " + why);
  }
  // The whole entry is read at once, its size bounded by the file's own size before anything
  // is allocated from a field inside it.
  constexpr uint64_t kHeader = 8 + 64 + 8 + 64;
  constexpr uint64_t kMaxEntry = (uint64_t(1) << 30) + kHeader;
  if (f.size < kHeader || f.size > kMaxEntry) {
    ::close(f.fd);
    return reject("entry of " + std::to_string(f.size) + " bytes is outside [" + std::to_string(kHeader) + ", " +
                  std::to_string(kMaxEntry) + "]");
  }
  std::vector<unsigned char> bytes(size_t(f.size));
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(f.fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += size_t(n);
  }
  ::close(f.fd);
  if (got != bytes.size()) return reject("short read");
  const unsigned char* p = bytes.data();
  uint64_t size = 0;
  std::memcpy(&size, p + 72, 8);
  if (std::memcmp(p, kMagic, 8) != 0) return reject("bad magic");
  if (std::memcmp(p + 8, key.data(), 64) != 0) return reject("key mismatch");
  if (size == 0) return reject("empty payload");
  if (size != f.size - kHeader)
    return reject("size field " + std::to_string(size) + " disagrees with the " + std::to_string(f.size - kHeader) +
                  " payload bytes in the file (truncated payload or trailing bytes)");
  std::vector<unsigned char> payload(p + kHeader, p + kHeader + size);
  if (sha256_hex(payload.data(), payload.size()) != std::string(reinterpret_cast<const char*>(p) + 80, 64))
    return reject("payload digest mismatch");

  cl::Program::Binaries bins{payload};
  std::vector<cl_int> bin_status;
  cl_int err = CL_SUCCESS;
  cl::Program prog(ctx_, {dev_}, bins, &bin_status, &err);
  if (err != CL_SUCCESS || bin_status.empty() || bin_status[0] != CL_SUCCESS) return reject("driver refused binary");
  if (prog.build({dev_}, options.c_str()) != CL_SUCCESS) return reject("binary failed to build");
  *out = prog;
  (void)label;
  return true;
}

void ProgramCache::store_to_disk(const std::string& path, const std::string& key, const cl::Program& prog) {
  // The cache is an optimisation: any failure here is reported in the trace and otherwise ignored.
  std::vector<std::vector<unsigned char>> bins;
  if (prog.getInfo(CL_PROGRAM_BINARIES, &bins) != CL_SUCCESS || bins.empty() || bins[0].empty()) return;
  const auto& payload = bins[0];
  std::string dir = path.substr(0, path.find_last_of('/'));
  mkdirs(dir);
  uint64_t size = payload.size();
  std::string digest = sha256_hex(payload.data(), payload.size());
  try {
    write_file_atomic(path, {{kMagic, 8}, {key.data(), 64}, {&size, 8}, {digest.data(), 64},
                             {payload.data(), payload.size()}},
                      {});
  } catch (const Error& e) {
    if (trace()) std::fprintf(stderr, "[clq cache] not stored: %s\n", e.what());
    return;
  }
  ++stats_.disk_writes;
}

cl::Program ProgramCache::rebuild(const std::string& file, const std::string& base_options) {
  std::string options = base_options;
  if (const char* extra = std::getenv("CLQ_BUILD_OPTIONS"); extra && *extra) options += std::string(" ") + extra;
  const std::string source = expanded_kernel_source(file);
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = key_hex(source, options);
  ++stats_.disk_rejected;
  if (trace()) std::fprintf(stderr, "[clq cache] rejected entry of %s: its binary lacks a kernel; rebuilding\n", file.c_str());
  cl::Program prog = build_from_source(file, source, options);
  ++stats_.builds;
  std::string dir = cache_dir();
  if (!dir.empty()) store_to_disk(dir + "/" + key + ".clbin", key, prog);
  memory_[key] = prog;
  from_disk_.erase(key);
  return prog;
}

bool ProgramCache::came_from_disk(const std::string& file, const std::string& base_options) {
  std::string options = base_options;
  if (const char* extra = std::getenv("CLQ_BUILD_OPTIONS"); extra && *extra) options += std::string(" ") + extra;
  std::lock_guard<std::mutex> lock(mu_);
  return from_disk_.count(key_hex(expanded_kernel_source(file), options)) != 0;
}

}  // namespace clq
