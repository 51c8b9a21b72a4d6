// The capability table (docs/design.md): data, not if-chains. Each row is one kernel variant of one
// op with the probed features it needs; selection takes the most preferred row whose requirements
// hold on this device and whose M range fits, unless the user names a variant. The row's
// variant names its launcher (host/ops/launcher.h: find_launcher), which owns the kernels.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/device.h"

namespace clq {

// Probed features a variant can require (bit mask). Only facts that gate a row are bits here:
// the other probed facts (fp16, fp64, subgroups, Intel matrix engines, the NVIDIA compute
// capability itself) are printed by `clquant caps` but decide nothing until a variant needs them,
// so the support matrix shows no device class that only repeats another.
enum Feature : uint32_t {
  kFeatCpu = 1u << 0,        // CL_DEVICE_TYPE_CPU (preference rows: register tiles at every M)
  kFeatNvMmaF16 = 1u << 1,   // inline PTX mma.sync m16n8k16 f16 probe passed (sm80+)
  kFeatNvMmaE4m3 = 1u << 2,  // inline PTX mma.sync m16n8k32 e4m3 probe passed (sm89+)
  kFeatNvWgmma = 1u << 3,    // sm_90a through the PTX patch path: wgmma and 200 KiB of .shared (probe)
};
constexpr int kFeatureCount = 4;
const char* feature_name(uint32_t bit);
uint32_t feature_mask(const DeviceFeatures& f);
std::string feature_list(uint32_t mask);  // "fp16+nv_mma_f16", or "none"

enum class VariantKind { kNative, kEmulated };  // S or E in the support matrix
enum class VariantStage { kImplemented, kPlanned };

struct VariantRow {
  const char* op;           // "w4a16_gemm", ...
  const char* variant;      // "gemv", "tiled", ...
  uint32_t requires;        // Feature bits that must all be present
  int preference;           // higher wins among eligible rows
  VariantKind kind;
  VariantStage stage;
  int64_t max_m;  // auto-selection only considers it for M <= max_m (0: any M)
  const char* note;
  int64_t min_m = 0;  // ... and for M >= min_m (0: any M)
};

const std::vector<VariantRow>& capability_table();
std::vector<std::string> table_ops();

// Implemented variants of `op` whose features this device has (what tests must cover), one
// entry per variant name (a variant may have several rows: a general one and a preference row
// for a device class).
std::vector<const VariantRow*> supported_variants(const std::string& op, const DeviceFeatures& f);

// Picks the variant for `op` at problem size `m`. `override_name` (or, when empty, the
// environment: CLQ_VARIANT="op=variant,..." or CLQ_VARIANT="variant") forces a variant; a forced
// variant that is unknown, planned or unsupported here is an error naming the reason.
const VariantRow& select_variant(const std::string& op, const DeviceFeatures& f, int64_t m,
                                 const std::string& override_name = "");

// Whether CLQ_VARIANT forces a variant of `op` (one that exists for it): ops that fall back to
// another row when the chosen one cannot take a call (FusedMoe) fall back only when nobody asked.
bool variant_forced(const std::string& op);

// InvalidArgument when CLQ_VARIANT is set but malformed (empty items, unknown ops or variants);
// select_variant checks it too, this lets a command refuse it before any work.
void check_variant_env();

// ---- support matrix across device classes ----------------------------------------------------
struct DeviceClass {
  const char* name;   // column header
  uint32_t features;  // features a typical member has
};
const std::vector<DeviceClass>& device_classes();

struct MatrixRow {
  const char* method;  // what a user asks for ("w4a16 int4 (GPTQ/AWQ)")
  const char* op;
};
const std::vector<MatrixRow>& matrix_rows();

struct MatrixCell {
  char letter = 'N';     // S, E or N: the best variant, planned rows included
  bool planned = false;  // that best variant exists only as a planned row
  const VariantRow* best = nullptr;
  char now = 'N';  // the best implemented variant's letter
  // "S", "E", "N" when the plan adds nothing; "E/S*" = emulated today, native planned.
  std::string text() const;
};
MatrixCell matrix_cell(const std::string& op, uint32_t features);

}  // namespace clq
