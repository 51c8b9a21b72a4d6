// A whole checkpoint at a glance: every layer clquant runs (quantized linear layers and MoE
// blocks), found by tensor names, each loaded through the one loader (host/formats/loader.h) so
// what is listed is what `clquant gemm` / `clquant moe` would accept, and which capability-table
// variant would run it on a device. `clquant inspect` prints this; `clquant verify`
// (host/model/verify.h) runs each layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/formats/loader.h"
#include "runtime/device.h"
#include "runtime/status.h"

namespace clq {

struct LayerInfo {
  enum class Kind { kLinear, kMoe };
  std::string prefix;
  Kind kind = Kind::kLinear;
  // What the loader decided ("gptq (from quantize_config.json), group 128, g_idx", "fp8 e4m3
  // 128x128 block scales", "int4 gptq experts, group 64; shared experts I=384, gated").
  std::string format;
  int64_t K = 0, N = 0;                       // linear: y[M, N] = x[M, K] W
  int64_t E = 0, H = 0, I = 0, shared_I = 0;  // MoE
  int group_size = 0;                         // int4 (-1: one group over K); 0 otherwise
  uint64_t bytes = 0;                         // every tensor under the prefix, as stored
  // The op whose capability-table rows the variants come from ("w8a16_int8_gemm"); empty when
  // the loader refused the layer.
  std::string op;
  // The variant the capability table picks here for one token (decode) and for 512 (prefill):
  // "gemv / tiled"; empty without a device.
  std::string variant_decode, variant_prefill;
  // Set when the loader refused the layer: its status and message (the layer is still listed).
  Status status = Status::kSuccess;
  std::string error;

  const char* kind_name() const { return kind == Kind::kLinear ? "linear" : "moe"; }
  std::string shape() const;  // "K=4096 N=11008" / "E=8 H=2048 I=1408 shared I=5632"
};

struct CheckpointInventory {
  std::string path;
  std::vector<LayerInfo> layers;  // in model order (layer numbers compared as numbers)
  size_t other_tensors = 0;       // dense weights, norms, embeddings: not run by clquant
  uint64_t other_bytes = 0, total_bytes = 0;
};

// The layer prefixes of a checkpoint, without loading them: P for P.qweight, P.weight_packed and
// an FP8 or I8 P.weight; P for P.experts.{e}.* and P.shared_expert(s).* (a MoE block owns P.gate.* too).
std::vector<LayerInfo> find_layers(const Checkpoint& ck);

// path: a .safetensors file, a model.safetensors.index.json or a folder (as the loader takes).
// device: the variants are chosen for it; nullptr leaves them empty. A layer the loader refuses
// is listed with its error; a checkpoint that cannot be opened throws.
CheckpointInventory inspect_checkpoint(const std::string& path, const DeviceFeatures* device,
                                       const LoadOptions& opt = {});

// Fills format, shapes and group size of `l` from a loaded layer.
void describe_layer(const LinearLayer& layer, LayerInfo* l);
void describe_layer(const MoeLayer& layer, LayerInfo* l);

// The op that runs a loaded layer (as the command line, the C API and verify build it), and the
// variant names its rows give at M rows ("gemv"), or "none: <why>".
std::string linear_op(const LinearLayer& l);
std::string moe_op(const MoeLayer& l);
std::string linear_variant(const LinearLayer& l, const DeviceFeatures& f, int64_t M);
std::string moe_variant(const MoeLayer& l, const DeviceFeatures& f, int64_t M);

}  // namespace clq
