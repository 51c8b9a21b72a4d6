#include "host/caps/caps.h"

#include <cstdlib>
#include <sstream>

#include "runtime/status.h"

namespace clq {

const char* feature_name(uint32_t bit) {
  switch (bit) {
    case kFeatCpu:
      return "cpu";
    case kFeatNvMmaF16:
      return "nv_mma_f16";
    case kFeatNvMmaE4m3:
      return "nv_mma_e4m3";
    case kFeatNvWgmma:
      return "nv_wgmma";
  }
  return "?";
}

uint32_t feature_mask(const DeviceFeatures& f) {
  uint32_t m = 0;
  if (f.is_cpu) m |= kFeatCpu;
  if (f.nv_mma_f16) m |= kFeatNvMmaF16;
  if (f.nv_mma_e4m3) m |= kFeatNvMmaE4m3;
  if (f.nv_wgmma) m |= kFeatNvWgmma;
  return m;
}

std::string feature_list(uint32_t mask) {
  std::string s;
  for (int i = 0; i < kFeatureCount; ++i)
    if (mask & (1u << i)) s += (s.empty() ? "" : "+") + std::string(feature_name(1u << i));
  return s.empty() ? "none" : s;
}

namespace {
using K = VariantKind;
using St = VariantStage;
// Planned rows show the whole plan in `clquant caps`; selection never picks them.
// clang-format off
const std::vector<VariantRow> kTable = {
  // op                variant        requires         pref kind         stage           max_m note
  {"convert",          "portable",    0, 10, K::kNative,   St::kImplemented, 0, "fp16/bf16/e4m3/e5m2 encode+decode, integer bit ops"},
  {"w4a16_gemm",       "gemv",        0, 20, K::kNative,   St::kImplemented, 64, "skinny M, split-K; beats tiled through M=64 on the H200 (bench/RESULTS.md)"},
  {"w4a16_gemm",       "tiled",       0, 10, K::kNative,   St::kImplemented, 0, "local-memory tiles, weights dequantized once per tile"},
  {"w4a16_gemm",       "gemv",        kFeatCpu, 15, K::kNative,   St::kImplemented, 0, "CPUs: register tiles of 8 rows x 16 columns beat local-memory tiling at every M measured"},
  {"w4a16_gemm",       "nv_mma_tiled",  kFeatNvMmaF16, 28, K::kNative,   St::kImplemented, 0, "weights as the mma A operand (fragment layout), cp.async-staged local-memory tiles, ldmatrix activations; from M=17 (H200: 1.7x nv_mma_skinny at M=24, 4.7x nv_mma at 4096)", 17},
  {"w4a16_gemm",       "nv_mma_skinny", kFeatNvMmaF16, 30, K::kNative,   St::kImplemented, 16, "weights as the mma A operand in a fragment-matched layout, bias-trick dequant, pipelined loads, in-kernel split-K; M <= 16"},
  {"w4a16_gemm",       "nv_wgmma",    kFeatNvWgmma | kFeatNvMmaF16, 32, K::kNative,   St::kImplemented, 0, "sm_90a through the PTX patch: wgmma m64n128k16 with the int4 fragment-layout weights dequantized in registers as A (fp16: scales folded into A where the layer's scales allow; bf16: fp32 fold per 64-row chunk), activations as 128-byte-swizzled .shared B, a cp.async producer warpgroup and two or three consumers on mbarriers; from M=128 (H200 fp16 28672x8192: 0.80x cuBLAS fp16 at M=4096, 0.65x at 256; 2.7x nv_mma_tiled at 4096)", 128},
  {"fp8_quant",        "portable",    0, 10, K::kNative,   St::kImplemented, 0, "per-token per-128-column (or per-tensor) dynamic e4m3 quantization"},
  // One kernel pair serves block W8A8, per-tensor W8A8 and W8A16 (scales broadcast, or
  // activations left unquantized), so the three ops list the same files.
  {"fp8_block_gemm",   "gemv",        0, 20, K::kEmulated, St::kImplemented, 32, "e4m3 decoded by bit placement, two-level fp32 accumulation; beats tiled through M=32 on the H200"},
  {"fp8_block_gemm",   "tiled",       0, 10, K::kEmulated, St::kImplemented, 0, "local-memory tiles, each weight decoded once per tile"},
  {"fp8_block_gemm",   "gemv",        kFeatCpu, 15, K::kEmulated, St::kImplemented, 0, "CPUs: register tiles at every M (as for w4a16)"},
  {"fp8_block_gemm",   "nv_mma_e4m3", kFeatNvMmaE4m3, 30, K::kNative,   St::kImplemented, 0, "mma.sync m16n8k32 e4m3 on the codes themselves, two-level fp32 accumulation; from M=8 (H200: gemv wins at M=1)", 8},
  {"fp8_block_gemm",   "nv_wgmma_e4m3", kFeatNvWgmma | kFeatNvMmaE4m3, 32, K::kNative, St::kImplemented, 0, "sm_90a through the PTX patch: wgmma m64n128k32 e4m3 from 128-byte-swizzled stages in module .shared (6 x 32 KiB), a cp.async producer warpgroup and two consumers on mbarriers, block scales folded per 128-K step; from M=16 (H200: 1.6x nv_mma_e4m3 at M=16, 2.4x at 64, 5.4x at 4096)", 16},
  {"fp8_tensor_gemm",  "gemv",        0, 20, K::kEmulated, St::kImplemented, 32, "per-tensor scales broadcast into the block kernel"},
  {"fp8_tensor_gemm",  "tiled",       0, 10, K::kEmulated, St::kImplemented, 0, "per-tensor scales broadcast into the block kernel"},
  {"fp8_tensor_gemm",  "gemv",        kFeatCpu, 15, K::kEmulated, St::kImplemented, 0, "CPUs: register tiles at every M"},
  {"fp8_tensor_gemm",  "nv_mma_e4m3", kFeatNvMmaE4m3, 30, K::kNative,   St::kImplemented, 0, "the block kernel with per-tensor scales broadcast; from M=8", 8},
  {"fp8_tensor_gemm",  "nv_wgmma_e4m3", kFeatNvWgmma | kFeatNvMmaE4m3, 32, K::kNative, St::kImplemented, 0, "the block wgmma kernel with per-tensor scales broadcast; from M=16", 16},
  {"w8a16_gemm",       "gemv",        0, 20, K::kEmulated, St::kImplemented, 32, "fp16/bf16 activations widened, e4m3 weights decoded in software"},
  {"w8a16_gemm",       "tiled",       0, 10, K::kEmulated, St::kImplemented, 0, "fp16/bf16 activations widened, e4m3 weights decoded in software"},
  {"w8a16_gemm",       "gemv",        kFeatCpu, 15, K::kEmulated, St::kImplemented, 0, "CPUs: register tiles at every M"},
  {"w8a16_gemm",       "nv_mma",      kFeatNvMmaF16, 30, K::kNative,   St::kPlanned,     0, "e4m3 -> f16 in registers, mma.sync f16"},
  {"gguf_gemm",        "gemv",        0, 20, K::kNative,   St::kImplemented, 16, "GGUF Q4_0/Q8_0/Q4_K/Q6_K rows decoded in the kernel, one work-group per weight row"},
  {"gguf_gemm",        "tiled",       0, 10, K::kNative,   St::kImplemented, 0, "32x32 tiles, each weight block decoded once per tile into local memory"},
  {"w8a16_int8_gemm",  "gemv",        0, 20, K::kNative,   St::kImplemented, 64, "int8 codes (GPTQ 8-bit, compressed-tensors int8) with group or channel scales, zero folded per group, split-K; the int4 gemv's M range until measured"},
  {"w8a16_int8_gemm",  "tiled",       0, 10, K::kNative,   St::kImplemented, 0, "local-memory tiles, int8 weights dequantized once per tile"},
  {"w8a16_int8_gemm",  "gemv",        kFeatCpu, 15, K::kNative,   St::kImplemented, 0, "CPUs: register tiles at every M (as for w4a16)"},
  {"w8a16_int8_gemm",  "nv_mma",      kFeatNvMmaF16, 30, K::kNative,   St::kPlanned,     0, "int8 codes to f16 exactly (|q - z| <= 256), mma.sync f16 with the w4a16 mainloop"},
  {"w8a8_int8_quant",  "portable",    0, 10, K::kNative,   St::kImplemented, 0, "per-token dynamic int8, correctly rounded divisions by integer long division: bit-identical to the host twin"},
  {"w8a8_int8_gemm",   "portable",    0, 10, K::kNative,   St::kImplemented, 0, "per-channel int8 weights x per-token int8 activations, exact int32 sums, plain integer arithmetic (a correctness baseline: one output per work-item, untuned)"},
  {"w8a8_int8_gemm",   "nv_mma_s8",   kFeatNvMmaF16, 30, K::kNative,   St::kPlanned,     0, "mma.sync s8 (sm80+), after a known-answer probe"},
  {"w8a8_int8_gemm",   "nv_wgmma_s8", kFeatNvWgmma, 32, K::kNative,   St::kImplemented, 0, "sm_90a through the PTX patch: wgmma m64n128k32 s8 on the FP8 prefill's pipeline (common/wgmma_gemm.clh), exact int32 sums, scales applied once at the end: bit-identical to portable (H200 M=4096: 0.72x torch _int_mm at 8192x8192, 0.84x at 28672x8192; 12-57x portable)"},
  {"w4a8_gemm",        "emulated",    0, 10, K::kEmulated, St::kImplemented, 0, "e4m3 activations per token or per tensor, turned back into fp32 values, then the w4a16_gemm variants: W4A8 numerics at W4A16 speed"},
  {"w4a8_gemm",        "nv_mma_e4m3", kFeatNvMmaE4m3, 30, K::kNative, St::kPlanned, 0, "(q - z) to e4m3 exactly, mma.sync e4m3, group scales folded per step"},
  {"weight_quant",     "portable",    0, 10, K::kNative,   St::kImplemented, 0, "online weight quantization (int4/int8 groups with fp16 scales, block FP8), integer maxima and correctly rounded divisions: bit-identical to the host twin"},
  {"moe_routing",      "portable",    0, 10, K::kNative,   St::kImplemented, 0, "router logits, softmax / DeepSeek grouped top-k, ties to the lower id"},
  {"moe_align",        "portable",    0, 10, K::kNative,   St::kImplemented, 0, "sorted token ids, expert per block, padded count; deterministic"},
  {"moe_gemm",         "portable",    0, 10, K::kNative,   St::kImplemented, 0, "grouped register-tiled GEMMs over fp16/bf16 or int4 experts, SwiGLU and routing weight fused"},
  {"moe_gemm",         "nv_mma",      kFeatNvMmaF16, 30, K::kNative,   St::kPlanned,     0, "mma.sync grouped GEMM for prefill"},
  {"moe_gemm_int8",    "portable",    0, 10, K::kNative,   St::kImplemented, 0, "grouped register-tiled GEMMs over int8 weight-only experts (GPTQ 8-bit, compressed-tensors int8; groups, act-order), the w8a16_int8 inner loop, SwiGLU and routing weight fused; general path only (no decode kernel)"},
  {"moe_gemm_fp8",     "emulated",    0, 10, K::kEmulated, St::kImplemented, 0, "grouped GEMMs over 128x128 block-FP8 experts, e4m3 decoded in software"},
  {"moe_gemm_fp8",     "nv_mma_e4m3", kFeatNvMmaE4m3, 30, K::kNative,   St::kPlanned,     0, "mma.sync e4m3 grouped gemm"},
  // The whole layer (FusedMoe); M is the call's token slots, T * top_k.
  {"fused_moe",        "decode",      0, 20, K::kNative,   St::kImplemented, 512, "four launches, no host round trip: routing + FP8 staging, top-k + alignment, gate_up + SwiGLU, down + combine; fp16/bf16/FP8 experts, no expert map"},
  {"fused_moe",        "nv_wgmma",    kFeatNvWgmma | kFeatNvMmaF16, 30, K::kNative, St::kImplemented, 0, "prefill, fp16/bf16 experts with activations of their type: the general path's routing and alignment in blocks of 128 slots, then register-A wgmma m64n128k16 grouped GEMMs through the PTX patch (weights ldmatrix.trans'd from cp.async stages, activation rows gathered by sorted id in the producer), SwiGLU in registers, a carried as 16-bit hi + lo, routing weight in the down GEMM's epilogue, the combine", 256},
  {"fused_moe",        "general",     0, 10, K::kNative,   St::kImplemented, 0, "routing, alignment, staging, grouped GEMMs (moe_routing, moe_align, moe_gemm/moe_gemm_fp8/moe_gemm_int8 rows), split-K reductions, combine; every weight kind (int4 and int8 experts only here)"},
  {"fused_moe",        "general",     kFeatCpu, 25, K::kNative, St::kImplemented, 0, "CPUs keep the general path at every T (the decode path was written and measured for GPUs)"},
};
// clang-format on

// One column per distinct set of gating features: a CPU runs the same variants (S/E) as a GPU
// without tensor cores, only preferred differently, so they share the first column.
const std::vector<DeviceClass> kClasses = {
    {"portable", 0},  // any OpenCL 1.2 device: PoCL, rusticl, GPUs without the NVIDIA probes
    {"NV-sm80", kFeatNvMmaF16},
    {"NV-sm89+", kFeatNvMmaF16 | kFeatNvMmaE4m3},
};

const std::vector<MatrixRow> kMatrixRows = {
    {"conversions fp16/bf16/fp8", "convert"},   {"w4a16 int4 GPTQ/AWQ", "w4a16_gemm"},
    {"w8a8 fp8 act quant", "fp8_quant"},        {"w8a8 fp8 block 128x128", "fp8_block_gemm"},
    {"w8a8 fp8 per-tensor", "fp8_tensor_gemm"}, {"w8a16 fp8 weight-only", "w8a16_gemm"},
    {"gguf q4_0/q8_0/q4_k/q6_k", "gguf_gemm"},
    {"w4a8 int4 x fp8 act", "w4a8_gemm"},
    {"w8a16 int8 weight-only", "w8a16_int8_gemm"},
    {"w8a8 int8 act quant", "w8a8_int8_quant"},   {"w8a8 int8 per-channel", "w8a8_int8_gemm"},
    {"online quant int4/int8/fp8", "weight_quant"},
    {"moe routing top-k", "moe_routing"},       {"moe align", "moe_align"},
    {"moe gemm fp16/int4", "moe_gemm"},         {"moe gemm block fp8", "moe_gemm_fp8"},
    {"moe gemm int8 weight-only", "moe_gemm_int8"},
};

// Removed variants keep their name for one release as an alias of their successor (CHANGELOG).
struct Alias {
  const char *op, *old_name, *new_name;
};
const Alias kAliases[] = {{"w4a16_gemm", "nv_mma", "nv_mma_tiled"}};

// CLQ_VARIANT is checked whole on every read: a typo ("w4a16_gem=tiled", "===,,,") would
// otherwise force nothing and the run would measure the default variant under a wrong label.
void check_variant_env(const std::string& s) {
  auto bad = [&](const std::string& why) {
    fail(Status::kInvalidArgument, "CLQ_VARIANT='" + s + "': " + why +
                                       " (expected op=variant,... or one variant name; see clquant caps)");
  };
  auto op_has = [](const std::string& op, const std::string& v) {
    for (auto& r : kTable)
      if ((op.empty() || op == r.op) && v == r.variant) return true;
    for (auto& a : kAliases)
      if ((op.empty() || op == a.op) && v == a.old_name) return true;
    return false;
  };
  auto op_known = [](const std::string& op) {
    for (auto& r : kTable)
      if (op == r.op) return true;
    return false;
  };
  if (s.find('=') == std::string::npos) {
    if (s.find(',') != std::string::npos) bad("a list needs op=variant items");
    if (!op_has("", s)) bad("'" + s + "' is no variant of any op");
    return;
  }
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    const std::string item = s.substr(start, comma - start);
    start = comma + 1;
    auto eq = item.find('=');
    if (item.empty()) bad("empty item");
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size() || item.find('=', eq + 1) != std::string::npos)
      bad("item '" + item + "' is not op=variant");
    const std::string op = item.substr(0, eq), v = item.substr(eq + 1);
    if (!op_known(op)) bad("unknown op '" + op + "'");
    if (!op_has(op, v)) bad("'" + v + "' is no variant of " + op);
    if (comma == s.size()) break;
  }
}

std::string env_override(const std::string& op) {
  const char* e = std::getenv("CLQ_VARIANT");
  if (!e || !*e) return "";
  std::string s = e;
  check_variant_env(s);
  if (s.find('=') == std::string::npos) return s;  // one name: applies to any op that has it
  std::istringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq != std::string::npos && item.substr(0, eq) == op) return item.substr(eq + 1);
  }
  return "";
}
}  // namespace

bool variant_forced(const std::string& op) {
  const std::string v = env_override(op);
  if (v.empty()) return false;
  for (auto& r : kTable)
    if (op == r.op && v == r.variant) return true;
  for (auto& a : kAliases)
    if (op == a.op && v == a.old_name) return true;
  return false;
}

void check_variant_env() {
  if (const char* e = std::getenv("CLQ_VARIANT"); e && *e) check_variant_env(std::string(e));
}

const std::vector<VariantRow>& capability_table() {
  return kTable;
}
const std::vector<DeviceClass>& device_classes() {
  return kClasses;
}
const std::vector<MatrixRow>& matrix_rows() {
  return kMatrixRows;
}

std::vector<std::string> table_ops() {
  std::vector<std::string> ops;
  for (auto& r : kTable) {
    bool seen = false;
    for (auto& o : ops) seen |= (o == r.op);
    if (!seen) ops.push_back(r.op);
  }
  return ops;
}

std::vector<const VariantRow*> supported_variants(const std::string& op, const DeviceFeatures& f) {
  uint32_t have = feature_mask(f);
  std::vector<const VariantRow*> v;
  for (auto& r : kTable)
    if (op == r.op && r.stage == St::kImplemented && (r.requires & ~have) == 0) {
      bool seen = false;
      for (auto* p : v) seen |= std::string(p->variant) == r.variant;
      if (!seen) v.push_back(&r);
    }
  return v;
}

const VariantRow& select_variant(const std::string& op, const DeviceFeatures& f, int64_t m,
                                 const std::string& override_name) {
  uint32_t have = feature_mask(f);
  std::string forced = override_name.empty() ? env_override(op) : override_name;
  bool env_single = override_name.empty() && !forced.empty() && std::getenv("CLQ_VARIANT") &&
                    std::string(std::getenv("CLQ_VARIANT")).find('=') == std::string::npos;
  // Called on every op call: the variant list is built only for the error messages.
  auto names = [&] {
    std::string n;
    for (auto& r : kTable)
      if (op == r.op) n += std::string(n.empty() ? "" : ", ") + r.variant;
    return n;
  };
  bool known = false;
  for (auto& r : kTable) known |= op == r.op;
  if (!known) fail(Status::kInternal, "capability table has no op '" + op + "'");
  for (const Alias& a : kAliases)
    if (op == a.op && forced == a.old_name) forced = a.new_name;
  if (!forced.empty()) {
    for (auto& r : kTable) {
      if (op != r.op || forced != r.variant) continue;
      if (r.stage == St::kPlanned)
        fail(Status::kNotSupported, "variant '" + forced + "' of " + op + " is planned but not implemented yet");
      uint32_t missing = r.requires & ~have;
      if (missing)
        fail(Status::kNotSupported, "variant '" + forced + "' of " + op + " needs " + feature_list(missing) +
                                        ", which device '" + f.device_name + "' lacks (has " + feature_list(have) +
                                        ")");
      return r;
    }
    // A single-name CLQ_VARIANT meant for another op does not break this one.
    if (!env_single)
      fail(Status::kInvalidArgument, "unknown variant '" + forced + "' for " + op + " (variants: " + names() + ")");
  }
  const VariantRow* best = nullptr;
  for (auto& r : kTable) {
    if (op != r.op || r.stage != St::kImplemented || (r.requires & ~have)) continue;
    if (r.max_m > 0 && m > r.max_m) continue;
    if (r.min_m > 0 && m < r.min_m) continue;
    if (!best || r.preference > best->preference) best = &r;
  }
  if (!best) fail(Status::kNotSupported, "no implemented variant of " + op + " runs on device '" + f.device_name + "'");
  return *best;
}

std::string MatrixCell::text() const {
  if (!planned || letter == now) return std::string(1, now);
  return std::string(1, now) + "/" + letter + "*";
}

MatrixCell matrix_cell(const std::string& op, uint32_t features) {
  MatrixCell cell;
  for (auto& r : kTable) {
    if (op != r.op || (r.requires & ~features)) continue;
    char letter = r.kind == K::kNative ? 'S' : 'E';
    bool planned = r.stage == St::kPlanned;
    // Rank: native beats emulated; at equal letters, implemented beats planned.
    auto rank = [](char l, bool p) { return (l == 'S' ? 4 : l == 'E' ? 2 : 0) + (p ? 0 : 1); };
    if (!cell.best || rank(letter, planned) > rank(cell.letter, cell.planned)) {
      cell.letter = letter;
      cell.planned = planned;
      cell.best = &r;
    }
    if (!planned && (cell.now == 'N' || (cell.now == 'E' && letter == 'S'))) cell.now = letter;
  }
  return cell;
}

}  // namespace clq
