// Online quantization, the format side: the methods and their rules, the quantized form of one
// weight matrix (codes, scales, zero points exactly as the device op and its host twin produce
// them), and how that form is written: compressed-tensors `pack-quantized` tensors (int4/int8)
// or a Hugging Face block-FP8 layer, plus their config.json `quantization_config`. The
// arithmetic is docs/numerics.md's "Online quantization"; the device op is
// host/ops/quantize/weight_quant.h, the host twin host/reference/quantize_reference.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/formats/fp8.h"
#include "host/formats/w4.h"
#include "host/io/safetensors.h"
#include "host/numeric.h"

namespace clq {

enum class QuantMethod { kInt4, kInt8, kFp8Block };
const char* quant_method_name(QuantMethod m);  // "int4", "int8", "fp8-block"
// Parses "int4" | "int8" | "fp8-block"; false otherwise.
bool quant_method_from_name(const std::string& s, QuantMethod* out);

struct QuantSpec {
  QuantMethod method = QuantMethod::kInt4;
  int group_size = 128;  // integer methods: columns per group along K; -1 = one group per row (channel)
  bool symmetric = true;  // integer methods only; FP8 blocks are symmetric by definition
  int bits() const { return method == QuantMethod::kInt8 ? 8 : 4; }
  bool is_int() const { return method != QuantMethod::kFp8Block; }
};

// Refuses (InvalidArgument) a group size that is neither -1 nor in [1, 2^30], and asymmetric FP8.
void check_quant_spec(const QuantSpec& spec);
// The spec from a method name ("int4" | "int8" | "fp8-block"), a group size (0: the default,
// 128, for the integer methods; refused for fp8-block, whose blocks are fixed) and asymmetry,
// checked (InvalidArgument naming the value).
QuantSpec quant_spec_from(const std::string& method, int group_size, bool asym);
std::string quant_spec_text(const QuantSpec& s);  // "int4 g128 sym", "int8 per-channel asym", "fp8-block 128x128"

// The quantized form of w [N][K]. Integer methods: codes in stored units (signed code + 2^(bits-1),
// 0..15 or 0..255), G = ceil(K / group_size) fp16 scales per row, zeros in stored units when
// asymmetric (empty when symmetric: the zero is 2^(bits-1)). FP8 block: e4m3 codes and fp32
// scales [ceil(N/128)][ceil(K/128)].
struct QuantizedWeight {
  QuantSpec spec;
  int64_t N = 0, K = 0;
  int64_t group = 0;   // resolved group size along K (K for per channel); 128 for FP8
  int64_t G = 0;       // groups along K per row (FP8: Kb)
  int64_t Nb = 0;      // FP8 block rows (ceil(N / 128)); 0 for integer methods
  std::vector<uint8_t> codes;      // [N][K]
  std::vector<uint16_t> scales16;  // integer methods: [N][G] fp16 bits
  std::vector<uint8_t> zeros;      // integer asymmetric: [N][G]
  std::vector<float> scales32;     // FP8: [Nb][G]
  double dequant(int64_t n, int64_t k) const;  // the value a reader of the written tensors gets
};

// The weight matrix to quantize: dtype F16, BF16 or F32, [N][K] row-major.
struct DenseWeight {
  std::string name;
  DType dtype = DType::kBF16;
  int64_t N = 0, K = 0;
  const void* data = nullptr;
};
// The dense weight of a 2-D F16/BF16/F32 tensor; FormatError / InvalidShape naming it otherwise.
DenseWeight dense_weight(const StTensor& t);

// Every rule, before any work: N, K in [1, 2^31) (InvalidShape), the spec (check_quant_spec),
// and every element finite (InvalidArgument naming the tensor, the element [n][k] and its value).
void check_quant_input(const DenseWeight& w, const QuantSpec& spec);

// Refuses (InvalidShape) a layer the written format's readers cannot take: int4 needs K and N
// multiples of 8 (words of 8 codes along K, zero points packed 8 rows to a word), int8 multiples
// of 4, and both need K a multiple of the group size (compressed-tensors readers, clquant's and
// vLLM's, index the group as k / group_size without a ragged last group). FP8 blocks take any shape.
void check_writable(const std::string& layer, int64_t N, int64_t K, const QuantSpec& spec);

// The integer scale as read back must be finite: a group whose range needs a scale above
// 65504 (fp16's largest) is refused (InvalidArgument naming the row, the group and the tensor).
void check_quant_result(const QuantizedWeight& q, const std::string& name);

// Quantization error of the dequantized weights against the original, in fp64.
struct QuantError {
  double err_sq = 0.0, ref_sq = 0.0;  // sum (deq - w)^2 and sum w^2
  double max_abs = 0.0;               // max |deq - w|
  int64_t count = 0;
  double rel_fro() const;  // sqrt(err_sq / ref_sq); 0 when both are 0
  void add(const QuantError& o);
};
QuantError quant_error(const DenseWeight& w, const QuantizedWeight& q);

// The tensors of one quantized layer, owned, in the written format, with views for the loaders.
// Integer: P.weight_packed I32 [N, K*bits/32] (code k in bits [bits*(k % per), ...) of word
// k / per, per = 32 / bits), P.weight_scale F16 [N, G], P.weight_zero_point I32 [N*bits/32, G]
// packed along N when asymmetric, P.weight_shape I64 [2] = {N, K}. FP8: P.weight F8_E4M3 [N, K],
// P.weight_scale_inv F32 [Nb, Kb].
struct QuantizedTensors {
  std::vector<StTensor> tensors;  // views into `storage`
  std::vector<std::shared_ptr<std::vector<uint8_t>>> storage;
  W4Checkpoint w4() const;   // integer methods (format compressed-tensors, the spec's bits and group)
  Fp8Checkpoint fp8() const;  // FP8 block
  QuantSpec spec;
  int64_t group = 0;
  const StTensor* find(const std::string& suffix) const;  // by the name's ending, e.g. ".weight_scale"
  void add_to(SafetensorsWriter& w) const;
};
QuantizedTensors quantized_tensors(const QuantizedWeight& q, const std::string& prefix);
// The tensors quantized_tensors writes for a layer [N][K] quantized with `spec`: names, dtypes,
// shapes and nbytes in the same order, `data` null. Known before any quantization, so a sharded
// output can be laid out (and its file names checked) before the first layer runs.
std::vector<StTensor> quantized_layout(const std::string& prefix, int64_t N, int64_t K, const QuantSpec& spec);

// config.json's `quantization_config` for a checkpoint written with `spec`: compressed-tensors
// (`quant_method: compressed-tensors`, `format: pack-quantized`, one config group targeting
// Linear, `ignore` = `ignore`) or FP8 (`quant_method: fp8`, `fmt: e4m3`, `activation_scheme:
// dynamic`, `weight_block_size: [128, 128]`, `modules_to_not_convert` = `ignore`).
// Returned as JSON text, so this header needs no JSON library.
std::string quantization_config_json(const QuantSpec& spec, const std::vector<std::string>& ignore);

// The default selection of `clquant quantize` without --layers: the tensor `name` is a 2-D
// F16/BF16/F32 `*.weight` and no dot-separated part of its layer name is an embedding
// (`embed_tokens`, `embed`, `embeddings`, `wte`, `wpe`, `tok_embeddings`), `lm_head`, `output`
// (GGUF-style head), a norm (any part containing `norm` or starting with `ln`), or a router (`gate`,
// `shared_expert_gate`, `router`).
bool default_quantizable(const StTensor& t);

}  // namespace clq
