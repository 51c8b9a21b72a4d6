// Device discovery over every platform, the probed feature record of a device, and selection
// by index or name substring (--device / CLQ_DEVICE).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/cl.h"

namespace clq {

// What a device can do, as probed (never guessed from its name).
struct DeviceFeatures {
  std::string platform_name, platform_version, platform_vendor, device_name, vendor, driver_version, device_version;
  int opencl_c_major = 1, opencl_c_minor = 0;
  bool is_gpu = false, is_cpu = false;
  bool fp16 = false;                   // cl_khr_fp16
  bool fp64 = false;                   // cl_khr_fp64
  bool khr_subgroups = false;          // cl_khr_subgroups
  bool intel_subgroups = false;        // cl_intel_subgroups
  bool intel_matrix = false;           // cl_intel_subgroup_matrix_multiply_accumulate
  std::vector<size_t> subgroup_sizes;  // CL_DEVICE_SUB_GROUP_SIZES_INTEL where exposed
  bool correctly_rounded_div_sqrt = false;
  uint64_t local_mem = 0, max_alloc = 0, global_mem = 0;
  uint32_t compute_units = 0, max_clock_mhz = 0, vendor_id = 0;
  size_t max_work_group = 0;
  // CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT: 16 or 8 where a work-item's vectors map onto SIMD
  // registers (PoCL); 1 where the compiler vectorizes across work-items instead (Mesa llvmpipe).
  uint32_t native_float_width = 1;
  std::string extensions;
  // NVIDIA (cl_nv_device_attribute_query); -1 when the query is absent.
  int nv_cc_major = -1, nv_cc_minor = -1;
  // Compile-and-run known-answer probes (filled by probe_features); false when not run.
  bool nv_mma_f16 = false;   // mma.sync m16n8k16 f32.f16.f16.f32
  bool nv_mma_e4m3 = false;  // mma.sync m16n8k32 f32.e4m3.e4m3.f32
  bool nv_wgmma = false;     // sm_90a through the PTX patch path: wgmma m64n8k16 and 200 KiB of .shared
  std::string probe_notes;   // why a probe reported absent (empty when all passed)

  bool has_extension(const std::string& ext) const;
  int nv_sm() const { return nv_cc_major < 0 ? -1 : nv_cc_major * 10 + nv_cc_minor; }
};

struct DeviceEntry {
  int index = 0;  // position in the flat list over all platforms
  cl::Platform platform;
  cl::Device device;
  DeviceFeatures features;  // static queries only; probes are run by Context
};

// Every device of every platform, in platform order. Throws DeviceNotFound when there is none.
std::vector<DeviceEntry> list_devices();

// selector: "" -> the first GPU, else the first CPU, else the first device;
// digits -> that index; "cpu", "gpu", "accelerator" -> the first device of that type; otherwise
// the first device where the selector is a case-insensitive substring of the platform's name,
// vendor or version, or of the device's name, vendor or driver version (so "pocl" finds the
// "Portable Computing Language" platform by its version string, "rusticl", "nvidia", "mesa" theirs).
// When `selector` is empty, CLQ_DEVICE is consulted first.
DeviceEntry select_device(const std::string& selector);

DeviceFeatures query_features(const cl::Platform& p, const cl::Device& d);

std::string device_type_name(const DeviceFeatures& f);

// "" when PoCL is not installed or its kernel cache folder can be made; else why PoCL cannot
// start (an unwritable HOME), for the "no OpenCL device" message.
std::string pocl_cache_problem();

}  // namespace clq
