#include "runtime/status.h"

#include <string>

namespace clq {

const char* status_name(Status s) {
  switch (s) {
    case Status::kSuccess:
      return "Success";
    case Status::kInvalidArgument:
      return "InvalidArgument";
    case Status::kInvalidShape:
      return "InvalidShape";
    case Status::kNotSupported:
      return "NotSupported";
    case Status::kDeviceNotFound:
      return "DeviceNotFound";
    case Status::kBuildFailed:
      return "BuildFailed";
    case Status::kIoError:
      return "IoError";
    case Status::kFormatError:
      return "FormatError";
    case Status::kCacheError:
      return "CacheError";
    case Status::kVerificationFailed:
      return "VerificationFailed";
    case Status::kInternal:
      return "Internal";
  }
  return "OpenCLError";
}

std::string cl_error_name(int code) {
  switch (code) {
#define CLQ_E(n, v) \
  case v:           \
    return #n;
    CLQ_E(CL_SUCCESS, 0)
    CLQ_E(CL_DEVICE_NOT_FOUND, -1)
    CLQ_E(CL_DEVICE_NOT_AVAILABLE, -2)
    CLQ_E(CL_COMPILER_NOT_AVAILABLE, -3)
        CLQ_E(CL_MEM_OBJECT_ALLOCATION_FAILURE, -4) CLQ_E(CL_OUT_OF_RESOURCES, -5) CLQ_E(
            CL_OUT_OF_HOST_MEMORY, -6) CLQ_E(CL_PROFILING_INFO_NOT_AVAILABLE, -7) CLQ_E(CL_MEM_COPY_OVERLAP, -8)
            CLQ_E(CL_IMAGE_FORMAT_MISMATCH, -9) CLQ_E(CL_IMAGE_FORMAT_NOT_SUPPORTED, -10) CLQ_E(
                CL_BUILD_PROGRAM_FAILURE, -11) CLQ_E(CL_MAP_FAILURE, -12) CLQ_E(CL_MISALIGNED_SUB_BUFFER_OFFSET, -13)
                CLQ_E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST, -14) CLQ_E(CL_COMPILE_PROGRAM_FAILURE, -15) CLQ_E(
                    CL_LINKER_NOT_AVAILABLE, -16) CLQ_E(CL_LINK_PROGRAM_FAILURE, -17)
                    CLQ_E(CL_DEVICE_PARTITION_FAILED, -18) CLQ_E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE, -19) CLQ_E(
                        CL_INVALID_VALUE, -30) CLQ_E(CL_INVALID_DEVICE_TYPE, -31) CLQ_E(CL_INVALID_PLATFORM, -32)
                        CLQ_E(CL_INVALID_DEVICE, -33) CLQ_E(CL_INVALID_CONTEXT, -34) CLQ_E(
                            CL_INVALID_QUEUE_PROPERTIES, -35) CLQ_E(CL_INVALID_COMMAND_QUEUE, -36)
                            CLQ_E(CL_INVALID_HOST_PTR, -37) CLQ_E(CL_INVALID_MEM_OBJECT, -38) CLQ_E(
                                CL_INVALID_IMAGE_FORMAT_DESCRIPTOR, -39) CLQ_E(CL_INVALID_IMAGE_SIZE, -40)
                                CLQ_E(CL_INVALID_SAMPLER, -41) CLQ_E(CL_INVALID_BINARY, -42) CLQ_E(
                                    CL_INVALID_BUILD_OPTIONS,
                                    -43) CLQ_E(CL_INVALID_PROGRAM, -44) CLQ_E(CL_INVALID_PROGRAM_EXECUTABLE, -45)
                                    CLQ_E(CL_INVALID_KERNEL_NAME, -46) CLQ_E(CL_INVALID_KERNEL_DEFINITION, -47) CLQ_E(
                                        CL_INVALID_KERNEL, -48) CLQ_E(CL_INVALID_ARG_INDEX, -49)
                                        CLQ_E(CL_INVALID_ARG_VALUE, -50) CLQ_E(CL_INVALID_ARG_SIZE, -51) CLQ_E(
                                            CL_INVALID_KERNEL_ARGS,
                                            -52) CLQ_E(CL_INVALID_WORK_DIMENSION,
                                                       -53) CLQ_E(CL_INVALID_WORK_GROUP_SIZE, -54)
                                            CLQ_E(CL_INVALID_WORK_ITEM_SIZE, -55) CLQ_E(CL_INVALID_GLOBAL_OFFSET, -56)
                                                CLQ_E(CL_INVALID_EVENT_WAIT_LIST, -57) CLQ_E(CL_INVALID_EVENT, -58)
                                                    CLQ_E(CL_INVALID_OPERATION, -59) CLQ_E(CL_INVALID_GL_OBJECT, -60)
                                                        CLQ_E(CL_INVALID_BUFFER_SIZE, -61) CLQ_E(
                                                            CL_INVALID_MIP_LEVEL, -62)
                                                            CLQ_E(CL_INVALID_GLOBAL_WORK_SIZE, -63) CLQ_E(
                                                                CL_INVALID_PROPERTY, -64)
                                                                CLQ_E(CL_INVALID_IMAGE_DESCRIPTOR, -65) CLQ_E(
                                                                    CL_INVALID_COMPILER_OPTIONS, -66)
                                                                    CLQ_E(CL_INVALID_LINKER_OPTIONS, -67) CLQ_E(
                                                                        CL_INVALID_DEVICE_PARTITION_COUNT, -68)
                                                                        CLQ_E(CL_INVALID_PIPE_SIZE, -69) CLQ_E(
                                                                            CL_INVALID_DEVICE_QUEUE, -70)
                                                                            CLQ_E(CL_INVALID_SPEC_ID, -71) CLQ_E(
                                                                                CL_MAX_SIZE_RESTRICTION_EXCEEDED, -72)
                                                                                CLQ_E(CL_PLATFORM_NOT_FOUND_KHR, -1001)
#undef CLQ_E
                                                                                    default
        : return "CL_UNKNOWN_ERROR(" +
          std::to_string(code) + ")";
  }
}

void check_cl(int code, const std::string& what) {
  if (code != 0) {
    throw Error(static_cast<Status>(code), what + ": " + cl_error_name(code));
  }
}

void fail(Status status, const std::string& message) {
  throw Error(status, message);
}

}  // namespace clq
