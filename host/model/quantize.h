// Online quantization of whole checkpoints and single layers, on the device (WeightQuantizer):
//   quantize_checkpoint: a bf16/fp16/fp32 safetensors checkpoint (file, index or folder) to a new
//     folder holding model.safetensors, or shards model-0000i-of-0000N.safetensors and
//     model.safetensors.index.json past max_shard_size (compressed-tensors pack-quantized
//     int4/int8, or HF block FP8), and config.json with its quantization_config; every other
//     tensor copied through. Written layer by layer: host memory holds one layer, not the model.
//   quantize_linear: one dense layer P.weight quantized into an in-memory LinearLayer that the
//     int4 / int8 / FP8 ops take exactly as if it had been loaded from such a checkpoint.
// Each reports the quantization error of the dequantized weights against the originals.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "host/formats/loader.h"
#include "host/formats/quantize.h"
#include "host/ops/op_events.h"
#include "runtime/context.h"

namespace clq {

struct QuantizeCheckpointOptions {
  std::string input;   // checkpoint: .safetensors, model.safetensors.index.json, or their folder
  std::string output;  // a folder: new, or existing and empty (any folder with `force`)
  QuantSpec spec;
  // ECMAScript regular expression searched in each layer name (a 2-D float tensor's name without
  // ".weight"); empty: default_quantizable (host/formats/quantize.h).
  std::string layers;
  // Lets `output` be a non-empty folder and replace its model.safetensors and config.json (regular
  // files only; never an input, never IN's own folder).
  bool force = false;
  // Most tensor bytes in one output file (headers not counted), as transformers' save_pretrained
  // `max_shard_size`: tensors go into shards in name order, a new shard starting where the next
  // tensor would pass the limit; a tensor larger than the limit has a shard of its own. All in
  // one shard: OUT/model.safetensors; else model-00001-of-0000N.safetensors ... and
  // model.safetensors.index.json. 0 is refused.
  uint64_t max_shard_size = kDefaultMaxShardSize;
  static constexpr uint64_t kDefaultMaxShardSize = 5000000000ull;  // "5GB", transformers' default
};

// A size as `--max-shard-size` takes it: a whole number of bytes, optionally followed (no space)
// by a unit, case-insensitive: B, KB/MB/GB/TB (powers of 1000, as transformers) or
// KiB/MiB/GiB/TiB (powers of 1024). "5GB" = 5e9, "2GiB" = 2^31, "4096" = 4096 bytes. InvalidArgument
// naming `what`, the text and the rule for anything else (a sign, a fraction, an unknown unit,
// 0, more than 2^64 - 1). An empty `what` leaves the name out, for a caller that prints it already.
uint64_t parse_byte_size(const std::string& text, const std::string& what);

struct LayerQuantReport {
  std::string layer;  // prefix P of P.weight
  int64_t N = 0, K = 0;
  QuantError error;
  double device_ms = 0.0;
};

struct QuantizeReport {
  std::vector<LayerQuantReport> layers;
  QuantError total;
  int64_t copied = 0;  // tensors written unchanged
  // weights_path: OUT/model.safetensors, or OUT/model.safetensors.index.json when sharded.
  std::string weights_path, config_path;
  std::vector<std::string> shards;  // file names in OUT, in order (one: "model.safetensors")
  uint64_t total_size = 0;          // tensor bytes over all shards (the index's metadata.total_size)
  // Earlier outputs and stale temporaries removed from OUT under `force` (file names).
  std::vector<std::string> removed;
};

// Throws clq::Error before writing anything on every rule of host/formats/quantize.h, a bad
// regular expression, no layer selected, an input that is already quantized (a
// quantization_config in config.json or a quantize_config.json) or a GGUF file, a max_shard_size
// of 0 or one that gives more than 99999 shards, and an output that is an input, IN's folder, not
// a folder, or a non-empty folder without `force`, or any output name (or earlier output to be
// removed) that is an input or not a regular file.
// Every file is written under a temporary name in OUT and renamed when all are complete; a failure
// before then (a layer refused after its device pass, a full disk) removes the temporaries and a
// folder the run created. With `force`, the earlier outputs in OUT that the new set does not
// replace (model.safetensors, model.safetensors.index.json, model-*-of-*.safetensors) are removed
// after the new files are in place, so no loader finds a stale file or index; so are the
// temporaries a killed earlier run left (.clq-XXXXXXXX.tmp regular files that are no input; a
// symbolic link or another name is left alone).
QuantizeReport quantize_checkpoint(Context& c, const QuantizeCheckpointOptions& opt);
// The report as JSON text (`clquant quantize --json`, the C API and Python): method, group_size,
// symmetric, layers [{layer, N, K, rel_fro_error, max_abs_error, device_ms}], overall
// {rel_fro_error, max_abs_error, weights}, copied_tensors, weights, config, shards [file names],
// total_size, removed [file names]. indent < 0: one line.
std::string quantize_report_json(const QuantizeReport& r, const QuantSpec& spec, int indent = 2);

// One dense layer quantized on the device. `layer` views `tensors` (keep them together).
struct OnlineQuantLayer {
  QuantizedTensors tensors;
  LinearLayer layer;
  QuantError error;
  OpEvents events;
};
OnlineQuantLayer quantize_linear(Context& c, std::shared_ptr<const Checkpoint> ck, const std::string& prefix,
                                 const QuantSpec& spec);

// A MoE block with dense experts (and dense shared experts) quantized at load, every projection
// through WeightQuantizer: int4 or int8 (compressed-tensors layout, run as the int4 / int8
// weight-only expert kinds) or fp8-block. The router stays as it is. `layer` views `tensors` (keep them together); `error` sums every projection.
struct OnlineQuantMoe {
  std::deque<QuantizedTensors> tensors;
  std::shared_ptr<MoeCheckpoint> shared;  // the quantized shared experts, when the block has them
  MoeLayer layer;
  QuantError error;
  double device_ms = 0.0;
};
OnlineQuantMoe quantize_moe(Context& c, const MoeLayer& dense, const QuantSpec& spec);

}  // namespace clq
