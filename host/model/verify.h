// Every quantized linear layer and MoE block of a checkpoint, run once on the device with seeded
// random activations and compared with its fp64 host reference on the same quantized weights
// (SPEC section 6 tolerances, as `clquant gemm --check` / `clquant moe --check`). One layer is
// loaded, uploaded, run and released before the next, so a model larger than the device fits.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "host/model/inspect.h"
#include "host/reference/reference.h"
#include "runtime/context.h"

namespace clq {

struct LayerCheck {
  LayerInfo layer;
  bool ok = false;
  // Why the layer failed other than by its numbers: the loader's or the op's refusal, with its
  // status name ("[InvalidShape] ..."). Empty when it ran.
  std::string error;
  ErrorStats err;        // device output against the fp64 reference
  double tolerance = 0;  // the mean relative error bound it was held to
  std::string variant;   // what ran ("w4a16_gemm/gemv", "moe block, shared experts")
  double ms = 0;         // wall time of the whole check: load, upload, run, reference
  double device_ms = 0;  // the op's device time (events; 0 where they cannot be read)
};

struct VerifyReport {
  std::string path;
  std::vector<LayerCheck> layers;
  size_t failed = 0;
  double worst_rel = 0, worst_abs = 0;  // over the layers that ran
  std::string worst_layer;              // the prefix of worst_rel
  double seconds = 0;
  bool ok() const { return failed == 0 && !layers.empty(); }
};

struct VerifyOptions {
  std::string layers;  // ECMAScript regex searched in each prefix; empty = every layer
  int64_t tokens = 5;  // rows of activations (bf16, uniform in [-1, 1)); outputs are fp32
  uint64_t seed = 1;
  LoadOptions load;
  // Called before each layer (done == nullptr) and after it (done = its result).
  std::function<void(size_t index, size_t total, const LayerInfo& layer, const LayerCheck* done)> progress;
};

// Throws InvalidArgument for a malformed regex, one that selects no layer, or tokens < 1;
// whatever a layer throws is recorded in its LayerCheck (the others still run).
VerifyReport verify_checkpoint(Context& c, const std::string& path, const VerifyOptions& o = {});

// One layer (already found by find_layers) against its reference.
LayerCheck verify_layer(Context& c, std::shared_ptr<const Checkpoint> ck, const LayerInfo& layer,
                        const VerifyOptions& o);

}  // namespace clq
