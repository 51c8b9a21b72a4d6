#include "runtime/device.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "runtime/status.h"

namespace clq {

bool DeviceFeatures::has_extension(const std::string& ext) const {
  std::istringstream ss(extensions);
  std::string tok;
  while (ss >> tok)
    if (tok == ext) return true;
  return false;
}

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\0' || std::isspace((unsigned char)s.back()))) s.pop_back();
  return s;
}
template <typename T>
T info(const cl::Device& d, cl_device_info what, T fallback) {
  T v{};
  return d.getInfo(what, &v) == CL_SUCCESS ? v : fallback;
}
std::string str_info(const cl::Device& d, cl_device_info what) {
  std::string v;
  return d.getInfo(what, &v) == CL_SUCCESS ? trim(v) : std::string();
}
}  // namespace

DeviceFeatures query_features(const cl::Platform& p, const cl::Device& d) {
  DeviceFeatures f;
  p.getInfo(CL_PLATFORM_NAME, &f.platform_name);
  p.getInfo(CL_PLATFORM_VERSION, &f.platform_version);
  f.platform_name = trim(f.platform_name);
  f.platform_version = trim(f.platform_version);
  f.device_name = str_info(d, CL_DEVICE_NAME);
  f.vendor = str_info(d, CL_DEVICE_VENDOR);
  f.driver_version = str_info(d, CL_DRIVER_VERSION);
  f.device_version = str_info(d, CL_DEVICE_VERSION);
  f.extensions = str_info(d, CL_DEVICE_EXTENSIONS);
  std::string cver = str_info(d, CL_DEVICE_OPENCL_C_VERSION);  // "OpenCL C 1.2 ..."
  int maj = 1, min = 0;
  if (std::sscanf(cver.c_str(), "OpenCL C %d.%d", &maj, &min) == 2) {
    f.opencl_c_major = maj;
    f.opencl_c_minor = min;
  }
  cl_device_type type = info<cl_device_type>(d, CL_DEVICE_TYPE, 0);
  f.is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
  f.is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
  f.fp16 = f.has_extension("cl_khr_fp16");
  f.fp64 = f.has_extension("cl_khr_fp64");
  f.khr_subgroups = f.has_extension("cl_khr_subgroups");
  f.intel_subgroups = f.has_extension("cl_intel_subgroups");
  f.intel_matrix = f.has_extension("cl_intel_subgroup_matrix_multiply_accumulate");
  if (f.intel_subgroups) {
    std::vector<size_t> sizes;
    if (d.getInfo(0x4108 /* CL_DEVICE_SUB_GROUP_SIZES_INTEL */, &sizes) == CL_SUCCESS) f.subgroup_sizes = sizes;
  }
  cl_device_fp_config fp = info<cl_device_fp_config>(d, CL_DEVICE_SINGLE_FP_CONFIG, 0);
  f.correctly_rounded_div_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
  f.local_mem = info<cl_ulong>(d, CL_DEVICE_LOCAL_MEM_SIZE, 0);
  f.max_alloc = info<cl_ulong>(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, 0);
  f.global_mem = info<cl_ulong>(d, CL_DEVICE_GLOBAL_MEM_SIZE, 0);
  f.compute_units = info<cl_uint>(d, CL_DEVICE_MAX_COMPUTE_UNITS, 0);
  f.max_clock_mhz = info<cl_uint>(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, 0);
  f.vendor_id = info<cl_uint>(d, CL_DEVICE_VENDOR_ID, 0);
  f.max_work_group = info<size_t>(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, 0);
  if (f.has_extension("cl_nv_device_attribute_query")) {
    f.nv_cc_major = int(info<cl_uint>(d, 0x4000 /* CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV */, 0));
    f.nv_cc_minor = int(info<cl_uint>(d, 0x4001 /* CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV */, 0));
  }
  return f;
}

std::string device_type_name(const DeviceFeatures& f) {
  return f.is_gpu ? "GPU" : f.is_cpu ? "CPU" : "other";
}

std::vector<DeviceEntry> list_devices() {
  std::vector<cl::Platform> platforms;
  cl_int err = cl::Platform::get(&platforms);
  if (err != CL_SUCCESS && err != CL_PLATFORM_NOT_FOUND_KHR) check_cl(err, "clGetPlatformIDs");
  std::vector<DeviceEntry> out;
  for (auto& p : platforms) {
    std::vector<cl::Device> devs;
    if (p.getDevices(CL_DEVICE_TYPE_ALL, &devs) != CL_SUCCESS) continue;
    for (auto& d : devs) {
      DeviceEntry e;
      e.index = int(out.size());
      e.platform = p;
      e.device = d;
      e.features = query_features(p, d);
      out.push_back(std::move(e));
    }
  }
  if (out.empty())
    fail(Status::kDeviceNotFound,
         "no OpenCL device found: no platform reported a device (is an ICD such as "
         "pocl-opencl-icd installed, and OCL_ICD_VENDORS right?)");
  return out;
}

DeviceEntry select_device(const std::string& selector_in) {
  std::string selector = selector_in;
  if (selector.empty()) {
    if (const char* env = std::getenv("CLQ_DEVICE")) selector = env;
  }
  auto all = list_devices();
  if (selector.empty()) {
    for (auto& e : all)
      if (e.features.is_gpu) return e;
    for (auto& e : all)
      if (e.features.is_cpu) return e;
    return all.front();
  }
  auto available = [&] {
    std::string s;
    for (auto& e : all)
      s += "\n  [" + std::to_string(e.index) + "] " + e.features.platform_name + " / " + e.features.device_name;
    return s;
  };
  bool digits = std::all_of(selector.begin(), selector.end(), [](unsigned char c) { return std::isdigit(c); });
  if (digits) {
    long idx = std::strtol(selector.c_str(), nullptr, 10);
    if (idx >= 0 && idx < long(all.size())) return all[size_t(idx)];
    fail(Status::kDeviceNotFound, "device index " + selector + " is out of range: there are " +
                                      std::to_string(all.size()) + " devices:" + available());
  }
  std::string needle = lower(selector);
  for (auto& e : all)
    if (lower(e.features.device_name).find(needle) != std::string::npos ||
        lower(e.features.platform_name).find(needle) != std::string::npos)
      return e;
  fail(Status::kDeviceNotFound,
       "no OpenCL device matches '" + selector +
           "' (index, or case-insensitive substring of platform or device name); available:" + available());
}

}  // namespace clq
