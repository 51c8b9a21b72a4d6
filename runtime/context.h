// One opened device: context, profiling queue, program cache and probed features.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/cl.h"
#include "runtime/command_buffer.h"
#include "runtime/device.h"
#include "runtime/program_cache.h"
#include "runtime/status.h"

namespace clq {

class Context {
 public:
  // Opens `entry` and runs the feature probes (results cached on disk next to the programs).
  explicit Context(const DeviceEntry& entry);
  // Opens the device chosen by select_device(selector) (CLQ_DEVICE when selector is empty).
  static std::shared_ptr<Context> open(const std::string& selector = "");

  const DeviceFeatures& features() const { return features_; }
  int device_index() const { return index_; }
  cl::Context& cl_context() { return ctx_; }
  cl::Device& device() { return dev_; }
  cl::CommandQueue& queue() { return queue_; }
  ProgramCache& programs() { return *programs_; }

  // Options every build gets: the language version, and correctly rounded fp32 division where the
  // device supports it (SPEC section 4: the FP8 activation scale divides).
  std::string base_options() const;
  // The kernel `name` of kernels_cl/<file> built with base_options() + extra_options. Memoized per
  // context: the first call builds (or loads from the disk cache), later calls are a map lookup,
  // because ops fetch their kernels on every call and the GPU waits meanwhile. Callers share the
  // returned object, so they set every argument right before each enqueue (set_args does); a
  // Context is not meant to be used from several threads at once.
  cl::Kernel kernel(const std::string& file, const std::string& name, const std::string& extra_options = "");
  // The same for a kernel whose PTX is rewritten by `patch` (NVIDIA only; runtime/ptx_patch.h).
  cl::Kernel kernel_patched(const std::string& file, const std::string& name, const std::string& extra_options,
                            const PtxPatch& patch);
  // Kernels built so far in this context (for tests of the memo).
  size_t kernels_memoized() const { return kernels_.size(); }
  // Off: every kernel() call goes through the program cache again (source expansion, SHA-256 of
  // source and options, clCreateKernel), as before the memo; kept so `clquant bench lookup` can
  // show both costs in one run.
  void set_kernel_memo(bool on) { memo_on_ = on; }

  cl::Buffer alloc(size_t bytes, cl_mem_flags flags = CL_MEM_READ_WRITE);
  void write(const cl::Buffer& buf, const void* src, size_t bytes, size_t offset = 0);
  void read(const cl::Buffer& buf, void* dst, size_t bytes, size_t offset = 0);
  // Fills `bytes` of `buf` with a repeating 32-bit pattern (outputs are poisoned before launches).
  void fill_u32(const cl::Buffer& buf, uint32_t pattern, size_t bytes);
  void finish();

  // Whether the device offers cl_khr_command_buffer with the entry points record() needs.
  bool command_buffers() const { return cb_api_.ok(); }
  // Runs `calls` with every kernel launch recorded into one command buffer instead of enqueued,
  // and returns the recording to replay (runtime/command_buffer.h). Only launches can be
  // recorded: a write, read, fill or finish inside `calls` throws InvalidArgument naming it, and
  // so does a call that allocates and clears scratch on first use, so run a call once before
  // recording it. NotSupported where command_buffers() is false. Nothing is left half-recorded.
  std::unique_ptr<CommandRecording> record(const std::function<void()>& calls);
  bool recording() const { return recording_; }
  // launch() while recording (the sizes as launch() takes them).
  void record_launch(const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
                     const std::string& what);

 private:
  int index_ = 0;
  cl::Platform platform_;
  cl::Device dev_;
  cl::Context ctx_;
  cl::CommandQueue queue_;
  DeviceFeatures features_;
  std::unique_ptr<ProgramCache> programs_;
  std::unordered_map<std::string, cl::Kernel> kernels_;  // key: file, options and entry name
  bool memo_on_ = true;
  CommandBufferApi cb_api_;
  bool recording_ = false;
  cl_command_buffer_khr rec_buffer_ = nullptr;
  cl_sync_point_khr rec_last_ = 0;
  std::vector<std::string> rec_names_;
  std::vector<cl::Kernel> rec_kernels_;
  void refuse_while_recording(const char* what) const;
};

// Sets every argument of `kernel` in order, checking each: a wrong type or size names the kernel
// and the argument index instead of surfacing later as a failed enqueue.
template <typename... Args>
void set_args(cl::Kernel& kernel, const Args&... args) {
  cl_uint index = 0;
  auto one = [&](const auto& value) {
    cl_int err = kernel.setArg(index, value);
    if (err != CL_SUCCESS) {
      std::string name;
      kernel.getInfo(CL_KERNEL_FUNCTION_NAME, &name);
      check_cl(err, "clSetKernelArg(" + name + ", argument " + std::to_string(index) + ")");
    }
    ++index;
  };
  (one(args), ...);
}

// Enqueues `kernel` over an NDRange; throws with the kernel name and sizes on failure.
cl::Event launch(Context& c, const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
                 const std::string& what);

// Device time of a finished event in milliseconds (profiling queue).
double event_ms(const cl::Event& e);

// Whether the sm_90a wgmma probe runs on compute capability 9.x (on unless CLQ_PROBE_WGMMA=0).
bool wgmma_probe_enabled();

// Runs the NVIDIA inline-PTX known-answer probes on `c` and records the result in `f`.
void probe_features(Context& c, DeviceFeatures& f);

}  // namespace clq
