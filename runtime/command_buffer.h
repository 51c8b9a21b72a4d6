// A recorded sequence of kernel launches (cl_khr_command_buffer), replayed with one enqueue.
// Context::record() makes one: every kernel launch of the calls it runs goes into the command
// buffer instead of the queue, with the arguments each kernel had when it was recorded; a replay
// runs them again, in order, on whatever the same buffers hold by then. What saves the host time
// of a call (argument setting, one enqueue per launch) where the driver offers the extension.
#pragma once
#include <string>
#include <vector>

#include "runtime/cl.h"

namespace clq {

// The extension's entry points, looked up once per context (null where it is absent).
struct CommandBufferApi {
  clCreateCommandBufferKHR_fn create = nullptr;
  clFinalizeCommandBufferKHR_fn finalize = nullptr;
  clReleaseCommandBufferKHR_fn release = nullptr;
  clEnqueueCommandBufferKHR_fn enqueue = nullptr;
  clCommandNDRangeKernelKHR_fn ndrange = nullptr;
  bool ok() const { return create && finalize && release && enqueue && ndrange; }
};

class CommandRecording {
 public:
  CommandRecording(const CommandBufferApi& api, cl::CommandQueue queue, cl_command_buffer_khr buffer,
                   std::vector<std::string> names, std::vector<cl::Kernel> kernels, bool simultaneous);
  ~CommandRecording();
  CommandRecording(const CommandRecording&) = delete;
  CommandRecording& operator=(const CommandRecording&) = delete;

  // Enqueues every recorded launch once; the event spans all of them (profiling queue). Where the
  // device lacks simultaneous use, first waits on the host for the previous replay to finish.
  cl::Event replay();
  bool simultaneous() const { return simultaneous_; }
  // The recorded launches' names, in order.
  const std::vector<std::string>& launches() const { return names_; }

 private:
  CommandBufferApi api_;
  cl::CommandQueue queue_;
  cl_command_buffer_khr buffer_;
  std::vector<std::string> names_;
  std::vector<cl::Kernel> kernels_;  // the recorded clones, alive as long as the buffer
  bool simultaneous_;
  cl::Event last_;
};

}  // namespace clq
