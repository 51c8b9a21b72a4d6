// The JSON form of `clquant inspect --json` / `clquant verify --json`, built here so that the
// command line, the C API (clq_report_json) and Python (clquant.inspect / verify) return the same
// document. Needs nlohmann_json, like host/caps/report.h (so clquant.hpp leaves it out).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "host/model/inspect.h"
#include "host/model/verify.h"

namespace clq {

// One listed layer: prefix, kind, format, bytes, shapes, group_size, variant {decode, prefill}
// (when chosen for a device) and error {status, message} (when the loader refused it).
nlohmann::json layer_info_json(const LayerInfo& l);
// device: the device the variants were chosen for; empty writes null.
nlohmann::json inventory_json(const CheckpointInventory& inv, const std::string& device);

// One checked layer: layer_info_json plus ok, error (the refusal as text, when it did not run),
// variant_ran, rel_err, max_abs_err, nan, tolerance, ms, device_ms.
nlohmann::json layer_check_json(const LayerCheck& r);
nlohmann::json verify_report_json(const VerifyReport& rep, const std::string& device);

}  // namespace clq
