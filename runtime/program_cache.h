// Two cache levels for built programs, with an honest key (lesson 4 of STYLE.md):
//  - memory: per (context, device, source, options), for the life of the ProgramCache;
//  - disk:   one file per SHA-256 of (format version, source, options, device name, driver
//            version, platform version, device version). The file repeats its key and carries
//            the SHA-256 of its payload, so a corrupt, truncated or foreign entry is detected,
//            rebuilt from source and overwritten; never trusted. Writes go to a temporary file
//            that is renamed into place, so readers see a whole entry or none.
// CLQ_CACHE=off disables the disk level; CLQ_CACHE_DIR moves it (default
// $XDG_CACHE_HOME/clquant or ~/.cache/clquant); CLQ_CACHE_TRACE=1 logs hits and misses to stderr.
#pragma once
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "runtime/cl.h"
#include "runtime/device.h"
#include "runtime/ptx_patch.h"

namespace clq {

struct CacheStats {
  int memory_hits = 0;
  int disk_hits = 0;
  int builds = 0;         // builds from source
  int disk_rejected = 0;  // entries found on disk but corrupt/mismatched (then rebuilt)
  int disk_writes = 0;
};

std::string cache_dir();  // resolved from the environment; "" when the disk cache is off
bool disk_cache_enabled();

class ProgramCache {
 public:
  ProgramCache(cl::Context ctx, cl::Device dev, DeviceFeatures features);

  // Builds (or fetches) kernels_cl/<file> with `options`. Throws BuildFailed with the file,
  // the options and the full build log.
  cl::Program get(const std::string& file, const std::string& options);
  // Same, then the PTX the driver returns rewritten by `patch` and reloaded as a binary (NVIDIA
  // only: runtime/ptx_patch.h). The patch is part of the cache key.
  cl::Program get_patched(const std::string& file, const std::string& options, const PtxPatch& patch);
  // Same, from a source string (used by probes and tests).
  cl::Program get_source(const std::string& label, const std::string& source, const std::string& options);

  // A disk entry can hold a valid binary of another program (same key and digest, forged or
  // written by a broken tool): Context::kernel asks whether a program whose kernel is missing
  // came from disk, and if so has it rebuilt from source (and the entry overwritten).
  bool came_from_disk(const std::string& file, const std::string& options);
  cl::Program rebuild(const std::string& file, const std::string& options);

  const CacheStats& stats() const { return stats_; }
  // Path of the disk entry a (source, options) pair maps to (for tests and tracing).
  std::string disk_path(const std::string& source, const std::string& options) const;
  void clear_memory();

  static constexpr int kFormatVersion = 1;

 private:
  std::string key_hex(const std::string& source, const std::string& options) const;
  bool load_from_disk(const std::string& path, const std::string& key, const std::string& label,
                      const std::string& options, cl::Program* out);
  void store_to_disk(const std::string& path, const std::string& key, const cl::Program& prog);
  cl::Program build_from_source(const std::string& label, const std::string& source, const std::string& options);
  // Both get paths: memory, then disk, then a build (patched PTX when `patch` is given).
  cl::Program fetch(const std::string& label, const std::string& source, const std::string& options,
                    const PtxPatch* patch);
  cl::Program build_patched(const std::string& label, const std::string& source, const std::string& options,
                            const PtxPatch& patch);

  cl::Context ctx_;
  cl::Device dev_;
  DeviceFeatures features_;
  std::map<std::string, cl::Program> memory_;  // keyed by key_hex
  std::set<std::string> from_disk_;             // keys whose program was loaded from a disk entry
  CacheStats stats_;
  std::mutex mu_;
};

}  // namespace clq
