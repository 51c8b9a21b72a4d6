// Small JSON files beside a checkpoint (model.safetensors.index.json, quantize_config.json,
// config.json), read as every input is: only regular files, never blocking, bounded in size and
// nesting, with errors that name the file and never print a whole value.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/safe_file.h"

namespace clq {

constexpr uint64_t kMaxJsonFileBytes = 64ull << 20;
constexpr int kMaxJsonDepth = 64;

// FormatError when the text is not JSON, nests deeper than kMaxJsonDepth, or the file is larger
// than kMaxJsonFileBytes; IoError when it cannot be opened or is not a regular file.
nlohmann::json read_json_file(const std::string& path, const std::string& what, FileId* id = nullptr);

// A JSON type name for messages ("a string", "a number with a fraction").
std::string json_kind(const nlohmann::json& v);

}  // namespace clq
