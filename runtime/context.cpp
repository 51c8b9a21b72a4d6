#include "runtime/context.h"

#include <cstdlib>

#include "runtime/status.h"

namespace clq {

Context::Context(const DeviceEntry& entry)
    : index_(entry.index), platform_(entry.platform), dev_(entry.device), features_(entry.features) {
  cl_int err = CL_SUCCESS;
  ctx_ = cl::Context(dev_, nullptr, nullptr, nullptr, &err);
  check_cl(err, "clCreateContext(" + features_.device_name + ")");
  queue_ = cl::CommandQueue(ctx_, dev_, CL_QUEUE_PROFILING_ENABLE, &err);
  check_cl(err, "clCreateCommandQueue(" + features_.device_name + ")");
  programs_ = std::make_unique<ProgramCache>(ctx_, dev_, features_);
  // CLQ_KERNEL_MEMO=off: every lookup pays the program-cache path, as before the memo (to measure
  // what the memo saves in any benchmark).
  if (const char* m = std::getenv("CLQ_KERNEL_MEMO"); m && (std::string(m) == "off" || std::string(m) == "0"))
    memo_on_ = false;
  probe_features(*this, features_);
  if (features_.has_extension("cl_khr_command_buffer")) {
    auto get = [&](const char* name) { return clGetExtensionFunctionAddressForPlatform(platform_(), name); };
    cb_api_.create = reinterpret_cast<clCreateCommandBufferKHR_fn>(get("clCreateCommandBufferKHR"));
    cb_api_.finalize = reinterpret_cast<clFinalizeCommandBufferKHR_fn>(get("clFinalizeCommandBufferKHR"));
    cb_api_.release = reinterpret_cast<clReleaseCommandBufferKHR_fn>(get("clReleaseCommandBufferKHR"));
    cb_api_.enqueue = reinterpret_cast<clEnqueueCommandBufferKHR_fn>(get("clEnqueueCommandBufferKHR"));
    cb_api_.ndrange = reinterpret_cast<clCommandNDRangeKernelKHR_fn>(get("clCommandNDRangeKernelKHR"));
  }
}

void Context::refuse_while_recording(const char* what) const {
  if (recording_)
    fail(Status::kInvalidArgument, std::string(what) + " inside Context::record(): only kernel launches can be "
                                   "recorded (run the call once before recording it, so scratch is allocated)");
}

std::unique_ptr<CommandRecording> Context::record(const std::function<void()>& calls) {
  if (!cb_api_.ok())
    fail(Status::kNotSupported, features_.device_name + " offers no cl_khr_command_buffer: nothing to record into");
  if (recording_) fail(Status::kInvalidArgument, "Context::record() does not nest");
  cl_int err = CL_SUCCESS;
  cl_command_queue q = queue_();
  // Back-to-back replays need simultaneous use (one replay pending while the next is enqueued);
  // without it each replay waits for the previous one on the host (CommandRecording::replay).
  cl_bitfield caps = 0;
  const bool simultaneous =
      clGetDeviceInfo(dev_(), CL_DEVICE_COMMAND_BUFFER_CAPABILITIES_KHR, sizeof(caps), &caps, nullptr) == CL_SUCCESS &&
      (caps & CL_COMMAND_BUFFER_CAPABILITY_SIMULTANEOUS_USE_KHR);
  const cl_command_buffer_properties_khr props[] = {CL_COMMAND_BUFFER_FLAGS_KHR, CL_COMMAND_BUFFER_SIMULTANEOUS_USE_KHR, 0};
  cl_command_buffer_khr buf = cb_api_.create(1, &q, simultaneous ? props : nullptr, &err);
  check_cl(err, "clCreateCommandBufferKHR");
  recording_ = true;
  rec_buffer_ = buf;
  rec_last_ = 0;
  rec_names_.clear();
  rec_kernels_.clear();
  auto stop = [&] {
    recording_ = false;
    rec_buffer_ = nullptr;
  };
  try {
    calls();
    if (rec_names_.empty()) fail(Status::kInvalidArgument, "Context::record(): the calls launched no kernel");
    check_cl(cb_api_.finalize(buf), "clFinalizeCommandBufferKHR");
  } catch (...) {
    stop();
    cb_api_.release(buf);
    throw;
  }
  stop();
  return std::make_unique<CommandRecording>(cb_api_, queue_, buf, std::move(rec_names_), std::move(rec_kernels_),
                                            simultaneous);
}

void Context::record_launch(const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
                            const std::string& what) {
  const cl_uint dims = cl_uint(global.dimensions());
  // The recorded command gets a clone of the kernel: ops share memoized kernels and set their
  // arguments again on every call, and a driver that reads a recorded kernel's arguments at replay
  // (PoCL 5 does) would otherwise replay the latest call's buffers.
  cl_int cerr = CL_SUCCESS;
  cl_kernel clone = clCloneKernel(kernel(), &cerr);
  check_cl(cerr, "clCloneKernel(" + what + ")");
  rec_kernels_.emplace_back(clone, false);
  // Each launch waits for the one before it, as on the in-order queue the op was written for.
  cl_sync_point_khr sp = 0;
  const bool chained = !rec_names_.empty();
  cl_int err = cb_api_.ndrange(rec_buffer_, nullptr, nullptr, clone, dims, nullptr, global.get(),
                               local.dimensions() ? local.get() : nullptr, chained ? 1 : 0,
                               chained ? &rec_last_ : nullptr, &sp, nullptr);
  check_cl(err, "clCommandNDRangeKernelKHR(" + what + ")");
  rec_last_ = sp;
  rec_names_.push_back(what);
}

std::shared_ptr<Context> Context::open(const std::string& selector) {
  return std::make_shared<Context>(select_device(selector));
}

std::string Context::base_options() const {
  std::string o = "-cl-std=CL1.2";
  if (features_.correctly_rounded_div_sqrt) o += " -cl-fp32-correctly-rounded-divide-sqrt";
  // Some compilers (PoCL's clang) print their warning count to the process's stderr, into the
  // tables of demo and bench; warnings are only asked for when the build log is shown.
  const char* log = std::getenv("CLQ_BUILD_LOG");
  if (!log || !*log || std::string(log) == "0") o += " -w";
  return o;
}

cl::Kernel Context::kernel(const std::string& file, const std::string& name, const std::string& extra) {
  return kernel_patched(file, name, extra, PtxPatch{});
}

cl::Kernel Context::kernel_patched(const std::string& file, const std::string& name, const std::string& extra,
                                   const PtxPatch& patch) {
  std::string key;
  key.reserve(file.size() + name.size() + extra.size() + 2);
  key.append(file).append(1, '\0').append(name).append(1, '\0').append(extra);
  if (!patch.empty()) key.append(1, '\0').append(patch.key());
  auto hit = memo_on_ ? kernels_.find(key) : kernels_.end();
  if (hit != kernels_.end()) return hit->second;
  std::string opts = base_options();
  if (!extra.empty()) opts += " " + extra;
  cl::Program prog = programs_->get_patched(file, opts, patch);
  cl_int err = CL_SUCCESS;
  cl::Kernel k(prog, name.c_str(), &err);
  if (err == CL_INVALID_KERNEL_NAME && patch.empty() && programs_->came_from_disk(file, opts)) {
    // The cached binary is not this source's program: a bad entry costs a rebuild, never a failure.
    prog = programs_->rebuild(file, opts);
    k = cl::Kernel(prog, name.c_str(), &err);
  }
  check_cl(err, "clCreateKernel(" + file + ":" + name + (patch.empty() ? ")" : ", patched PTX)"));
  if (memo_on_) kernels_.emplace(std::move(key), k);
  return k;
}

cl::Buffer Context::alloc(size_t bytes, cl_mem_flags flags) {
  if (bytes == 0) bytes = 4;  // zero-size buffers are invalid in OpenCL; keep a dummy word
  if (bytes > features_.max_alloc)
    fail(Status::kInvalidArgument, "buffer of " + std::to_string(bytes) +
                                       " bytes exceeds the device's max allocation of " +
                                       std::to_string(features_.max_alloc) + " bytes");
  cl_int err = CL_SUCCESS;
  cl::Buffer b(ctx_, flags, bytes, nullptr, &err);
  check_cl(err, "clCreateBuffer(" + std::to_string(bytes) + " bytes)");
  return b;
}

void Context::write(const cl::Buffer& buf, const void* src, size_t bytes, size_t offset) {
  refuse_while_recording("a buffer write");
  if (bytes == 0) return;
  check_cl(queue_.enqueueWriteBuffer(buf, CL_TRUE, offset, bytes, src),
           "clEnqueueWriteBuffer(" + std::to_string(bytes) + " bytes)");
}

void Context::read(const cl::Buffer& buf, void* dst, size_t bytes, size_t offset) {
  refuse_while_recording("a buffer read");
  if (bytes == 0) return;
  check_cl(queue_.enqueueReadBuffer(buf, CL_TRUE, offset, bytes, dst),
           "clEnqueueReadBuffer(" + std::to_string(bytes) + " bytes)");
}

void Context::fill_u32(const cl::Buffer& buf, uint32_t pattern, size_t bytes) {
  refuse_while_recording("a buffer fill");
  if (bytes == 0) return;
  check_cl(queue_.enqueueFillBuffer(buf, pattern, 0, bytes / 4 * 4), "clEnqueueFillBuffer");
}

void Context::finish() {
  refuse_while_recording("clFinish");
  check_cl(queue_.finish(), "clFinish");
}

cl::Event launch(Context& c, const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
                 const std::string& what) {
  if (c.recording()) {
    c.record_launch(kernel, global, local, what);
    return cl::Event();  // a recorded launch has no event of its own; the replay has one
  }
  cl::Event ev;
  cl_int err = c.queue().enqueueNDRangeKernel(kernel, cl::NullRange, global, local, nullptr, &ev);
  if (err != CL_SUCCESS) {
    auto dims = [](const cl::NDRange& r) {
      std::string s;
      for (size_t i = 0; i < r.dimensions(); ++i) s += (i ? "x" : "") + std::to_string(r.get()[i]);
      return s.empty() ? std::string("auto") : s;
    };
    throw Error(static_cast<Status>(err), "enqueue of " + what + " (global " + dims(global) + ", local " + dims(local) +
                                              ") failed: " + cl_error_name(err));
  }
  return ev;
}

double event_ms(const cl::Event& e) {
  cl_ulong start = 0, end = 0;
  check_cl(e.getProfilingInfo(CL_PROFILING_COMMAND_START, &start), "clGetEventProfilingInfo(START)");
  check_cl(e.getProfilingInfo(CL_PROFILING_COMMAND_END, &end), "clGetEventProfilingInfo(END)");
  return double(end - start) * 1e-6;
}

}  // namespace clq
