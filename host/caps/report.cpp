#include "host/caps/report.h"

#include <iomanip>
#include <sstream>

#include "host/caps/caps.h"
#include "host/ops/launcher.h"
#include "runtime/status.h"

namespace clq {

namespace {
std::string mib(uint64_t b) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(b >= (1ull << 30) ? 1 : 0);
  if (b >= (1ull << 30))
    s << double(b) / double(1ull << 30) << " GiB";
  else
    s << double(b) / double(1ull << 10) << " KiB";
  return s.str();
}
std::string nv_cc(const DeviceFeatures& f) {
  return f.nv_cc_major < 0 ? "-" : std::to_string(f.nv_cc_major) + "." + std::to_string(f.nv_cc_minor);
}
// Probe sizes: the M at which selection is reported (decode and prefill).
const int64_t kReportM[2] = {1, 4096};
}  // namespace

nlohmann::json features_json(const DeviceFeatures& f) {
  return {{"platform", f.platform_name},
          {"platform_version", f.platform_version},
          {"device", f.device_name},
          {"vendor", f.vendor},
          {"driver_version", f.driver_version},
          {"device_version", f.device_version},
          {"type", device_type_name(f)},
          {"opencl_c_version", std::to_string(f.opencl_c_major) + "." + std::to_string(f.opencl_c_minor)},
          {"cl_khr_fp16", f.fp16},
          {"cl_khr_fp64", f.fp64},
          {"cl_khr_subgroups", f.khr_subgroups},
          {"cl_khr_command_buffer", f.has_extension("cl_khr_command_buffer")},
          {"cl_intel_subgroups", f.intel_subgroups},
          {"subgroup_sizes", f.subgroup_sizes},
          {"intel_matrix", f.intel_matrix},
          {"correctly_rounded_div_sqrt", f.correctly_rounded_div_sqrt},
          {"compute_units", f.compute_units},
          {"max_clock_mhz", f.max_clock_mhz},
          {"local_mem_bytes", f.local_mem},
          {"max_alloc_bytes", f.max_alloc},
          {"global_mem_bytes", f.global_mem},
          {"max_work_group", f.max_work_group},
          {"native_float_width", f.native_float_width},
          {"nv_compute_capability", f.nv_cc_major < 0 ? nlohmann::json(nullptr) : nlohmann::json(nv_cc(f))},
          {"nv_mma_f16", f.nv_mma_f16},
          {"nv_mma_e4m3", f.nv_mma_e4m3},
          {"nv_wgmma", f.nv_wgmma},
          {"probe_notes", f.probe_notes},
          {"features", feature_list(feature_mask(f))}};
}

void print_devices(std::ostream& out, const std::vector<DeviceEntry>& devices) {
  for (auto& e : devices) {
    const auto& f = e.features;
    out << "[" << e.index << "] " << f.platform_name << " / " << f.device_name << " (" << device_type_name(f) << ")\n"
        << "    " << f.platform_version << "; driver " << f.driver_version << "; OpenCL C " << f.opencl_c_major << "."
        << f.opencl_c_minor << "\n"
        << "    compute units " << f.compute_units << " @ " << f.max_clock_mhz << " MHz, global " << mib(f.global_mem)
        << ", max alloc " << mib(f.max_alloc) << ", local " << mib(f.local_mem) << "\n"
        << "    fp16 " << (f.fp16 ? "yes" : "no") << ", fp64 " << (f.fp64 ? "yes" : "no") << ", subgroups "
        << (f.khr_subgroups     ? "khr"
            : f.intel_subgroups ? "intel"
                                : "no")
        << ", NVIDIA cc " << nv_cc(f) << "\n";
  }
}

nlohmann::json devices_json(const std::vector<DeviceEntry>& devices) {
  nlohmann::json a = nlohmann::json::array();
  for (auto& e : devices) {
    auto j = features_json(e.features);
    j["index"] = e.index;
    a.push_back(j);
  }
  return a;
}

void print_support_matrix(std::ostream& out, const DeviceFeatures* self) {
  const auto& classes = device_classes();
  size_t w0 = 27;
  out << std::left << std::setw(int(w0)) << "method";
  for (auto& c : classes) out << std::setw(14) << c.name;
  if (self) out << "this device";
  out << "\n";
  for (auto& row : matrix_rows()) {
    out << std::setw(int(w0)) << row.method;
    for (auto& c : classes) {
      MatrixCell cell = matrix_cell(row.op, c.features);
      out << std::setw(14) << cell.text();
    }
    if (self) {
      MatrixCell cell = matrix_cell(row.op, feature_mask(*self));
      out << cell.text();
    }
    out << "\n";
  }
  out << "S = native, E = emulated (runs, slower), N = not supported; X/Y* = X today, Y once a planned variant lands\n";
}

void print_caps(std::ostream& out, const Context& c) {
  const auto& f = c.features();
  out << "device [" << c.device_index() << "] " << f.platform_name << " / " << f.device_name << " ("
      << device_type_name(f) << ")\n";
  out << "  OpenCL C " << f.opencl_c_major << "." << f.opencl_c_minor << ", driver " << f.driver_version << "\n";
  out << "  cl_khr_fp16 " << (f.fp16 ? "yes" : "no") << ", cl_khr_fp64 " << (f.fp64 ? "yes" : "no")
      << ", cl_khr_subgroups " << (f.khr_subgroups ? "yes" : "no") << ", cl_intel_subgroups "
      << (f.intel_subgroups ? "yes" : "no") << ", correctly rounded div "
      << (f.correctly_rounded_div_sqrt ? "yes" : "no") << "\n";
  out << "  compute units " << f.compute_units << ", local mem " << mib(f.local_mem) << ", max alloc "
      << mib(f.max_alloc) << ", global mem " << mib(f.global_mem) << "\n";
  out << "  NVIDIA compute capability " << nv_cc(f) << ", mma.sync f16 probe " << (f.nv_mma_f16 ? "pass" : "absent")
      << ", mma.sync e4m3 probe " << (f.nv_mma_e4m3 ? "pass" : "absent") << ", wgmma (sm_90a PTX patch) probe "
      << (f.nv_wgmma ? "pass" : "absent") << "\n";
  if (!f.probe_notes.empty()) out << "  probe notes: " << f.probe_notes << "\n";
  // What Context::record() / `clquant bench moe --replay` can use (runtime/command_buffer.h).
  out << "  cl_khr_command_buffer " << (c.command_buffers() ? "yes: calls can be recorded and replayed" : "no") << "\n";
  out << "  features: " << feature_list(feature_mask(f)) << "\n\n";
  out << "variant chosen per op (M = 1 / M = 4096):\n";
  for (auto& op : table_ops()) {
    out << "  " << std::left << std::setw(16) << op;
    for (int i = 0; i < 2; ++i) {
      try {
        out << std::setw(14) << select_variant(op, f, kReportM[i]).variant;
      } catch (const Error&) {
        out << std::setw(14) << "-";
      }
    }
    out << "\n";
  }
  out << "\nsupport matrix:\n";
  print_support_matrix(out, &f);
}

namespace {
nlohmann::json launcher_files(const VariantRow& r) {
  const Launcher* l = find_launcher(r.op, r.variant);
  return l ? nlohmann::json(l->kernel_files()) : nlohmann::json::array();
}
}  // namespace

nlohmann::json caps_json(const Context& c) {
  const auto& f = c.features();
  nlohmann::json j;
  j["device"] = features_json(f);
  j["device"]["index"] = c.device_index();
  nlohmann::json chosen = nlohmann::json::object();
  for (auto& op : table_ops()) {
    nlohmann::json o = nlohmann::json::object();
    for (int i = 0; i < 2; ++i) {
      try {
        o["m" + std::to_string(kReportM[i])] = select_variant(op, f, kReportM[i]).variant;
      } catch (const Error&) {
        o["m" + std::to_string(kReportM[i])] = nullptr;
      }
    }
    chosen[op] = o;
  }
  j["chosen"] = chosen;
  nlohmann::json table = nlohmann::json::array();
  for (auto& r : capability_table())
    table.push_back({{"op", r.op},
                     {"variant", r.variant},
                     {"requires", feature_list(r.requires)},
                     {"kernel_files", launcher_files(r)},
                     {"preference", r.preference},
                     {"kind", r.kind == VariantKind::kNative ? "native" : "emulated"},
                     {"stage", r.stage == VariantStage::kImplemented ? "implemented" : "planned"},
                     {"max_m", r.max_m},
                     {"note", r.note}});
  j["table"] = table;
  nlohmann::json cols = nlohmann::json::array();
  for (auto& dc : device_classes()) cols.push_back(dc.name);
  cols.push_back("this device");
  nlohmann::json rows = nlohmann::json::array();
  for (auto& row : matrix_rows()) {
    nlohmann::json cells = nlohmann::json::object();
    auto put = [&](const std::string& col, uint32_t feats) {
      MatrixCell cell = matrix_cell(row.op, feats);
      cells[col] = {{"cell", std::string(1, cell.letter)},
                    {"planned", cell.planned},
                    {"variant", cell.best ? nlohmann::json(cell.best->variant) : nlohmann::json(nullptr)}};
    };
    for (auto& dc : device_classes()) put(dc.name, dc.features);
    put("this device", feature_mask(f));
    rows.push_back({{"method", row.method}, {"op", row.op}, {"cells", cells}});
  }
  j["support_matrix"] = {{"columns", cols}, {"rows", rows}};
  return j;
}

}  // namespace clq
