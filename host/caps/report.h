// Text and JSON reports of devices and capabilities (`clquant devices`, `clquant caps`).
#pragma once
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "runtime/context.h"
#include "runtime/device.h"

namespace clq {

nlohmann::json features_json(const DeviceFeatures& f);
void print_devices(std::ostream& out, const std::vector<DeviceEntry>& devices);
nlohmann::json devices_json(const std::vector<DeviceEntry>& devices);

// This device's features, the variant chosen per op, and the support matrix.
void print_caps(std::ostream& out, const Context& c);
nlohmann::json caps_json(const Context& c);
void print_support_matrix(std::ostream& out, const DeviceFeatures* this_device);

}  // namespace clq
