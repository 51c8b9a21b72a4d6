#include "runtime/command_buffer.h"

#include "runtime/status.h"

namespace clq {

CommandRecording::CommandRecording(const CommandBufferApi& api, cl::CommandQueue queue, cl_command_buffer_khr buffer,
                                   std::vector<std::string> names, std::vector<cl::Kernel> kernels, bool simultaneous)
    : api_(api),
      queue_(std::move(queue)),
      buffer_(buffer),
      names_(std::move(names)),
      kernels_(std::move(kernels)),
      simultaneous_(simultaneous) {}

CommandRecording::~CommandRecording() {
  if (buffer_) api_.release(buffer_);
}

cl::Event CommandRecording::replay() {
  if (!simultaneous_ && last_()) check_cl(last_.wait(), "clWaitForEvents (previous replay)");
  cl_command_queue q = queue_();
  cl_event ev = nullptr;
  check_cl(api_.enqueue(1, &q, buffer_, 0, nullptr, &ev), "clEnqueueCommandBufferKHR");
  last_ = cl::Event(ev);
  return last_;
}

}  // namespace clq
