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
  if (bytes == 0) return;
  check_cl(queue_.enqueueWriteBuffer(buf, CL_TRUE, offset, bytes, src),
           "clEnqueueWriteBuffer(" + std::to_string(bytes) + " bytes)");
}

void Context::read(const cl::Buffer& buf, void* dst, size_t bytes, size_t offset) {
  if (bytes == 0) return;
  check_cl(queue_.enqueueReadBuffer(buf, CL_TRUE, offset, bytes, dst),
           "clEnqueueReadBuffer(" + std::to_string(bytes) + " bytes)");
}

void Context::fill_u32(const cl::Buffer& buf, uint32_t pattern, size_t bytes) {
  if (bytes == 0) return;
  check_cl(queue_.enqueueFillBuffer(buf, pattern, 0, bytes / 4 * 4), "clEnqueueFillBuffer");
}

void Context::finish() {
  check_cl(queue_.finish(), "clFinish");
}

cl::Event launch(Context& c, const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
                 const std::string& what) {
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
