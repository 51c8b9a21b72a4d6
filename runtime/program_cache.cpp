#include "runtime/program_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "runtime/kernel_sources.h"
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
  // CLQ_BUILD_OPTIONS adds compiler options to every build (e.g. -cl-nv-verbose, whose register
  // and spill report CLQ_BUILD_LOG=1 then prints); they are part of the cache key.
  std::string options = base_options;
  if (const char* extra = std::getenv("CLQ_BUILD_OPTIONS"); extra && *extra) options += std::string(" ") + extra;
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = key_hex(source, options);
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
    if (trace()) std::fprintf(stderr, "[clq cache] disk hit %s (%s)\n", label.c_str(), path.c_str());
  } else {
    prog = build_from_source(label, source, options);
    ++stats_.builds;
    if (trace()) std::fprintf(stderr, "[clq cache] built %s [%s]\n", label.c_str(), options.c_str());
    if (!path.empty()) store_to_disk(path, key, prog);
  }
  memory_[key] = prog;
  return prog;
}

cl::Program ProgramCache::get_patched(const std::string& file, const std::string& base_options,
                                      const PtxPatch& patch) {
  if (patch.empty()) return get(file, base_options);
  std::string options = base_options;
  if (const char* extra = std::getenv("CLQ_BUILD_OPTIONS"); extra && *extra) options += std::string(" ") + extra;
  const std::string source = expanded_kernel_source(file);
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = key_hex(source, options + "\n" + patch.key());
  auto it = memory_.find(key);
  if (it != memory_.end()) {
    ++stats_.memory_hits;
    return it->second;
  }
  const std::string dir = cache_dir();
  const std::string path = dir.empty() ? "" : dir + "/" + key + ".clbin";
  cl::Program prog;
  if (!path.empty() && load_from_disk(path, key, file, options, &prog)) {
    ++stats_.disk_hits;
  } else {
    prog = build_patched(file, source, options, patch);
    ++stats_.builds;
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
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;  // plain miss
  auto reject = [&](const char* why) {
    ++stats_.disk_rejected;
    if (trace()) std::fprintf(stderr, "[clq cache] rejected %s: %s\n", path.c_str(), why);
    return false;
  };
  char magic[8];
  char key_buf[64];
  uint64_t size = 0;
  char digest_buf[64];
  if (!in.read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) return reject("bad magic");
  if (!in.read(key_buf, 64) || std::string(key_buf, 64) != key) return reject("key mismatch");
  if (!in.read(reinterpret_cast<char*>(&size), 8)) return reject("truncated header");
  if (!in.read(digest_buf, 64)) return reject("truncated header");
  if (size == 0 || size > (uint64_t(1) << 30)) return reject("implausible payload size");
  std::vector<unsigned char> payload(size);
  if (!in.read(reinterpret_cast<char*>(payload.data()), std::streamsize(size))) return reject("truncated payload");
  if (in.peek() != EOF) return reject("trailing bytes");
  if (sha256_hex(payload.data(), payload.size()) != std::string(digest_buf, 64))
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
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      if (trace()) std::fprintf(stderr, "[clq cache] cannot write %s\n", tmp.c_str());
      return;
    }
    uint64_t size = payload.size();
    std::string digest = sha256_hex(payload.data(), payload.size());
    out.write(kMagic, 8);
    out.write(key.data(), 64);
    out.write(reinterpret_cast<const char*>(&size), 8);
    out.write(digest.data(), 64);
    out.write(reinterpret_cast<const char*>(payload.data()), std::streamsize(payload.size()));
    if (!out.good()) {
      out.close();
      std::remove(tmp.c_str());
      return;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return;
  }
  ++stats_.disk_writes;
}

}  // namespace clq
