#include "host/model/report_json.h"

namespace clq {

nlohmann::json layer_info_json(const LayerInfo& l) {
  nlohmann::json j = {{"prefix", l.prefix}, {"kind", l.kind_name()}, {"format", l.format}, {"bytes", l.bytes}};
  if (l.kind == LayerInfo::Kind::kLinear) {
    j["K"] = l.K;
    j["N"] = l.N;
  } else {
    j["E"] = l.E;
    j["H"] = l.H;
    j["I"] = l.I;
    j["shared_I"] = l.shared_I;
  }
  j["group_size"] = l.group_size;
  if (!l.op.empty()) j["op"] = l.op;
  if (!l.variant_decode.empty()) j["variant"] = {{"decode", l.variant_decode}, {"prefill", l.variant_prefill}};
  if (!l.error.empty()) j["error"] = {{"status", status_name(l.status)}, {"message", l.error}};
  return j;
}

nlohmann::json inventory_json(const CheckpointInventory& inv, const std::string& device) {
  nlohmann::json j = {{"path", inv.path},
                      {"device", device.empty() ? nlohmann::json() : nlohmann::json(device)},
                      {"layers", nlohmann::json::array()},
                      {"other_tensors", inv.other_tensors},
                      {"other_bytes", inv.other_bytes},
                      {"total_bytes", inv.total_bytes}};
  for (const LayerInfo& l : inv.layers) j["layers"].push_back(layer_info_json(l));
  return j;
}

nlohmann::json layer_check_json(const LayerCheck& r) {
  nlohmann::json l = layer_info_json(r.layer);
  l["ok"] = r.ok;
  // A layer that did not run: its refusal replaces the inspect-style error object, as text with
  // the status name in front ("[InvalidArgument] ..."), the form verify prints.
  if (!r.error.empty()) l["error"] = r.error;
  l["variant_ran"] = r.variant;
  l["rel_err"] = r.err.rel_mean();
  l["max_abs_err"] = r.err.max_abs_err;
  l["nan"] = r.err.nan_count;
  l["tolerance"] = r.tolerance;
  l["ms"] = r.ms;
  l["device_ms"] = r.device_ms;
  return l;
}

nlohmann::json verify_report_json(const VerifyReport& rep, const std::string& device) {
  nlohmann::json j = {{"path", rep.path},
                      {"device", device.empty() ? nlohmann::json() : nlohmann::json(device)},
                      {"ok", rep.ok()},
                      {"layers", nlohmann::json::array()},
                      {"failed", rep.failed},
                      {"worst_rel_err", rep.worst_rel},
                      {"worst_abs_err", rep.worst_abs},
                      {"worst_layer", rep.worst_layer},
                      {"seconds", rep.seconds}};
  for (const LayerCheck& r : rep.layers) j["layers"].push_back(layer_check_json(r));
  return j;
}

}  // namespace clq
