// One status enum for the whole library: OpenCL's own error numbers pass through unchanged,
// clquant's own conditions live in a range (-2000 and below) that OpenCL never uses.
#pragma once
#include <stdexcept>
#include <string>

namespace clq {

enum class Status : int {
  kSuccess = 0,
  // OpenCL error codes (negative, -1 .. -72, plus vendor codes) are carried as-is.
  kInvalidArgument = -2000,     // a value the caller passed breaks a documented rule
  kInvalidShape = -2001,        // tensor shapes disagree with each other or the format
  kNotSupported = -2002,        // the device lacks a feature the request needs
  kDeviceNotFound = -2003,      // no OpenCL device, or none matches the selector
  kBuildFailed = -2004,         // a kernel failed to compile; the message holds the log
  kIoError = -2005,             // a file could not be opened, read or written
  kFormatError = -2006,         // a file is malformed (safetensors, JSON, checkpoint)
  kCacheError = -2007,          // the program cache could not be used (never fatal by itself)
  kVerificationFailed = -2008,  // a result disagreed with its reference
  kInternal = -2099,            // a bug in clquant
};

const char* status_name(Status s);
// Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"), or "CL_UNKNOWN_ERROR(<n>)".
std::string cl_error_name(int code);

// The library reports every failure by throwing clq::Error; it never exits or aborts.
class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const { return status_; }

 private:
  Status status_;
};

// Throws clq::Error carrying the CL code and its name if `code` is not CL_SUCCESS.
void check_cl(int code, const std::string& what);

[[noreturn]] void fail(Status status, const std::string& message);

}  // namespace clq
