#include "runtime/device.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "runtime/safe_file.h"
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

// Whether an installed ICD names PoCL (OCL_ICD_VENDORS, else the system vendor folder).
bool pocl_icd_registered() {
  std::string where = "/etc/OpenCL/vendors";
  if (const char* v = std::getenv("OCL_ICD_VENDORS"); v && *v) where = v;
  std::vector<std::string> files;
  struct stat st;
  if (::stat(where.c_str(), &st) != 0) return false;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = ::opendir(where.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 4 && n.compare(n.size() - 4, 4, ".icd") == 0) files.push_back(where + "/" + n);
      }
      ::closedir(d);
    }
  } else {
    files.push_back(where);
  }
  for (auto& f : files) {
    std::string why;
    OpenedFile of = try_open_regular_file(f, &why);
    if (of.fd < 0) continue;
    char buf[512];
    ssize_t n = ::read(of.fd, buf, sizeof buf);
    ::close(of.fd);
    if (n > 0 && lower(std::string(buf, size_t(n))).find("pocl") != std::string::npos) return true;
  }
  return false;
}
}  // namespace

// PoCL refuses to start (and so reports no platform) when it cannot create its kernel cache,
// which by default lives under $HOME. Say so instead of "no OpenCL device".
std::string pocl_cache_problem() {
  if (!pocl_icd_registered()) return "";
  std::string dir, from;
  if (const char* d = std::getenv("POCL_CACHE_DIR"); d && *d) {
    dir = d;
    from = "POCL_CACHE_DIR";
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    dir = std::string(x) + "/pocl";
    from = "XDG_CACHE_HOME";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    dir = std::string(h) + "/.cache/pocl";
    from = "HOME";
  } else {
    return "HOME is not set, so PoCL has no kernel cache folder (set POCL_CACHE_DIR to a writable folder)";
  }
  // The nearest folder that exists must take a new entry.
  std::string probe = dir;
  struct stat st;
  while (!probe.empty() && ::stat(probe.c_str(), &st) != 0) {
    auto s = probe.find_last_of('/');
    probe = s == std::string::npos || s == 0 ? (s == 0 ? "/" : ".") : probe.substr(0, s);
    if (probe == "/" || probe == ".") break;
  }
  bool writable = false;
  if (::stat(probe.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::string t = probe + "/.clq-probe-XXXXXX";
    if (char* made = ::mkdtemp(t.data())) {
      ::rmdir(made);
      writable = true;
    }
  }
  if (writable) return "";
  return "its kernel cache folder '" + dir + "' (from " + from + ") cannot be created: '" + probe +
         "' is not a writable folder; set POCL_CACHE_DIR (or XDG_CACHE_HOME, or HOME) to a writable folder";
}

DeviceFeatures query_features(const cl::Platform& p, const cl::Device& d) {
  DeviceFeatures f;
  p.getInfo(CL_PLATFORM_NAME, &f.platform_name);
  p.getInfo(CL_PLATFORM_VERSION, &f.platform_version);
  p.getInfo(CL_PLATFORM_VENDOR, &f.platform_vendor);
  f.platform_vendor = trim(f.platform_vendor);
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
  f.native_float_width = info<cl_uint>(d, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, 1);
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
  if (out.empty()) {
    const std::string pocl = pocl_cache_problem();
    if (!pocl.empty())
      fail(Status::kDeviceNotFound, "no OpenCL device found: PoCL is installed but cannot start: " + pocl);
    fail(Status::kDeviceNotFound,
         "no OpenCL device found: no platform reported a device (is an ICD such as "
         "pocl-opencl-icd installed, and OCL_ICD_VENDORS right?)");
  }
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
  if (needle == "cpu" || needle == "gpu" || needle == "accelerator") {
    for (auto& e : all) {
      cl_device_type type = info<cl_device_type>(e.device, CL_DEVICE_TYPE, 0);
      if ((needle == "cpu" && (type & CL_DEVICE_TYPE_CPU)) || (needle == "gpu" && (type & CL_DEVICE_TYPE_GPU)) ||
          (needle == "accelerator" && (type & CL_DEVICE_TYPE_ACCELERATOR)))
        return e;
    }
    fail(Status::kDeviceNotFound, "no OpenCL device of type " + needle + "; available:" + available());
  }
  for (auto& e : all) {
    const DeviceFeatures& f = e.features;
    for (const std::string* s : {&f.platform_name, &f.platform_vendor, &f.platform_version, &f.device_name,
                                 &f.vendor, &f.driver_version})
      if (lower(*s).find(needle) != std::string::npos) return e;
  }
  fail(Status::kDeviceNotFound,
       "no OpenCL device matches '" + selector +
           "' (an index; cpu, gpu or accelerator; or a case-insensitive substring of the platform's name, vendor or "
           "version, or the device's name, vendor or driver version); available:" +
           available() + (pocl_cache_problem().empty() ? "" : "\nPoCL cannot start: " + pocl_cache_problem()));
}

}  // namespace clq
