// clquant gemm: one quantized linear layer from a checkpoint, applied to activations from a file.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>

#include "host/caps/caps.h"
#include "host/formats/loader.h"
#include "host/model/quantize.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/gguf/gguf_gemm.h"
#include "host/ops/w4a8/w4a8_gemm.h"
#include "host/reference/fp8_reference.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/ops/w8a8_int8/w8a8_int8_gemm.h"
#include "host/reference/w8a8_int8_reference.h"
#include "host/reference/reference.h"
#include "host/io/safetensors.h"
#include "runtime/status.h"
#include "tools/clquant/commands.h"

namespace clq::cli {

CLI::App* add_gemm_command(CLI::App& app, GemmArgs& a) {
  auto* cmd = app.add_subcommand(
      "gemm", "y = x @ W for one quantized layer (GPTQ v1/v2, AWQ or compressed-tensors int4; GPTQ 8-bit or "
              "compressed-tensors int8 weight-only; FP8 e4m3 block, per-channel or per-tensor; GGUF "
              "Q4_0/Q8_0/Q4_K/Q6_K)");
  cmd->add_option("--weights", a.weights, "checkpoint: .safetensors, model.safetensors.index.json, their folder, or a .gguf file")
      ->required();
  cmd->add_option("--prefix", a.prefix,
                  "layer prefix P, e.g. model.layers.0.mlp.down_proj (GGUF: blk.0.ffn_down for blk.0.ffn_down.weight)")
      ->required();
  cmd->add_option("--input", a.input, "safetensors file with tensor 'input' [M, K] (F16, BF16 or F32)")->required();
  cmd->add_option("--output", a.output, "safetensors file to write tensor 'output' [M, N] (input's dtype)")->required();
  cmd->add_option("--format", a.format,
                  "gptq | gptq_v2 | awq | compressed-tensors (default: the tensor names for compressed-tensors, "
                  "else quantize_config.json / config.json beside the weights, "
                  "else the tensor shapes where unambiguous)");
  cmd->add_option("--group-size", a.group_size,
                  "group size, -1 for one group (default: config, else shapes); with --quantize the group to "
                  "quantize with (default 128)")
      ->check(integer_in(1, 1 << 30, /*allow_minus_one=*/true));
  cmd->add_option("--bits", a.bits,
                  "integer code width, 4 or 8 (default: quantize_config.json / config.json, else the tensors: an I8 "
                  "weight or weight_shape; GPTQ files without a config are read as 4-bit)")
      ->check(CLI::IsMember({4, 8}));
  cmd->add_option("--variant", a.variant, "force a kernel variant (see clquant caps)");
  cmd->add_flag("--check", a.check, "also compute the fp64 host reference and fail (exit 1) beyond tolerance");
  cmd->add_option("--act-dtype", a.act_dtype,
                  "FP8 layers: fp16 or bf16 runs weight-only (w8a16) with activations in that type "
                  "(the input is rounded to it if it differs); default: W8A8 with on-the-fly activation quantization. "
                  "int4 layers: fp8 runs W4A8 (activations to e4m3 per token)")
      ->check(CLI::IsMember({"fp16", "bf16", "fp8"}));
  cmd->add_option("--quantize", a.quantize,
                  "quantize the dense (F16/BF16/F32) PREFIX.weight on the device first (round to nearest; "
                  "docs/numerics.md), print the quantization error, then run the matching method: int4 "
                  "(W4A16), int8 (W8A16 int8) or fp8-block (W8A8 block FP8); --check uses the quantized weights")
      ->check(CLI::IsMember({"int4", "int8", "fp8-block"}));
  cmd->add_flag("--asym", a.asym, "with --quantize int4/int8: asymmetric codes (a zero point per group)");
  return cmd;
}

CLI::App* add_quant_fp8_command(CLI::App& app, QuantFp8Args& a) {
  auto* cmd =
      app.add_subcommand("quant-fp8", "quantize activations to e4m3 per token per 128 columns (SPEC section 4)");
  cmd->add_option("--input", a.input, "safetensors file with tensor 'input' [M, K] (F16, BF16 or F32)")->required();
  cmd->add_option("--output", a.output,
                  "safetensors file to write 'input_fp8' (F8_E4M3 [M, K]) and 'input_scale' (F32 [M, ceil(K/128)])")
      ->required();
  auto* pt = cmd->add_flag("--per-tensor", a.per_tensor,
                           "one dynamic scale for the whole tensor ('input_scale' is then a scalar)");
  cmd->add_flag("--per-token", a.per_token,
                "one dynamic scale per token over all K ('input_scale' is then F32 [M, 1]; SPEC section 7)")
      ->excludes(pt);
  return cmd;
}

std::vector<FileId> run_inputs(const Checkpoint* ck, const SafetensorsFile* input) {
  std::vector<FileId> ids;
  if (ck) {
    ids = ck->file_ids();
    for (const char* cfg : {"/quantize_config.json", "/config.json"})
      if (auto id = file_id(ck->dir() + cfg)) ids.push_back(*id);
  }
  if (input) ids.push_back(input->id());
  return ids;
}

namespace {
DType act_dtype(const StTensor& t) {
  switch (t.dtype) {
    case StDType::kF16:
      return DType::kF16;
    case StDType::kBF16:
      return DType::kBF16;
    case StDType::kF32:
      return DType::kF32;
    default:
      fail(Status::kFormatError,
           "tensor 'input' has dtype " + std::string(st_dtype_name(t.dtype)) + "; expected F16, BF16 or F32");
  }
}
StDType st_of(DType t) {
  return t == DType::kF16 ? StDType::kF16 : t == DType::kBF16 ? StDType::kBF16 : StDType::kF32;
}

// The op time printed is the device's (events); the host's one-time work (repack, upload, kernel
// build or cache load) is printed apart so a first run cannot pass it off as op time.
void print_setup(std::chrono::steady_clock::time_point t0, const OpEvents& ev) {
  const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "setup: " << std::max(0.0, wall - ev.ms())
            << " ms wall apart from the op (weight repack and upload, kernel build or cache load)\n";
}

struct Input {
  std::shared_ptr<SafetensorsFile> file;
  const StTensor* x = nullptr;
  DType dt = DType::kF16;
  int64_t M = 0, K = 0;
};

Input read_input(const std::string& path) {
  Input in;
  in.file = SafetensorsFile::open(path);
  in.x = in.file->find("input");
  if (!in.x) fail(Status::kFormatError, "input file '" + path + "' has no tensor named 'input'");
  if (in.x->shape.size() != 2 || in.x->shape[0] < 1 || in.x->shape[1] < 1)
    fail(Status::kInvalidShape, "input " + in.x->shape_str() + " must be [M, K] with M, K >= 1");
  in.dt = act_dtype(*in.x);
  in.M = in.x->shape[0];
  in.K = in.x->shape[1];
  return in;
}

// The input file for a layer of K columns: read, the output path checked against every input
// (weights, configs, activations) and [M, K] checked, all before any device work.
Input layer_input(const GemmArgs& a, const LinearLayer& layer, int64_t K, std::vector<FileId>* inputs) {
  Input in = read_input(a.input);
  *inputs = run_inputs(layer.checkpoint.get(), in.file.get());
  check_output_path(a.output, *inputs);
  if (in.K != K)
    fail(Status::kInvalidShape, "input " + in.x->shape_str() + " must be [M, K] with K = " + std::to_string(K) +
                                    " (from " + layer.prefix + ")");
  return in;
}

// --check: the output against its fp64 reference under SPEC section 6's relative criterion;
// prints the verdict and returns the exit code (1 beyond tolerance or on NaN).
int check_against(const std::vector<uint8_t>& y, DType yt, const std::vector<double>& ref, double tolerance) {
  const ErrorStats e = compare_output(y.data(), yt, ref);
  const bool ok = e.nan_count == 0 && e.rel_mean() < tolerance;
  std::cerr << "check: rel mean err " << e.rel_mean() << ", max abs err " << e.max_abs_err << ", NaN " << e.nan_count
            << (ok ? "  PASS\n" : "  FAIL\n");
  return ok ? 0 : 1;
}

void write_output(const GemmArgs& a, const std::vector<uint8_t>& y, DType yt, int64_t M, int64_t N,
                  const std::vector<FileId>& inputs) {
  SafetensorsWriter out;
  out.add("output", st_of(yt), {M, N}, y.data(), y.size());
  out.write(a.output, inputs);
}

// One FP8 layer: W8A8 (block or per-tensor) or, with --act-dtype, weight-only.
int run_fp8_gemm(Context& c, const GemmArgs& a, const LinearLayer& layer) {
  const std::string& P = layer.prefix;
  const Fp8Checkpoint& w = layer.fp8().ck;
  const Fp8Shape& shape = layer.fp8().shape;
  std::vector<FileId> inputs;
  Input in = layer_input(a, layer, shape.K, &inputs);
  // Weight-only: activations in the chosen 16-bit type (rounded once here if the file differs).
  std::vector<uint8_t> xbytes(in.x->data, in.x->data + in.x->nbytes);
  DType xt = in.dt;
  Fp8RunOptions opt;
  opt.variant = a.variant;
  if (!a.act_dtype.empty()) {
    DType want = a.act_dtype == "fp16" ? DType::kF16 : DType::kBF16;
    if (want != xt) {
      std::vector<uint8_t> conv(size_t(in.M * in.K) * 2);
      for (int64_t i = 0; i < in.M * in.K; ++i)
        store_from_f32(conv.data(), size_t(i), want, load_as_f32(xbytes.data(), size_t(i), xt));
      xbytes.swap(conv);
      xt = want;
    }
    opt.act = Fp8Act::kNone;
  }
  const auto t_setup = std::chrono::steady_clock::now();
  Fp8Gemm op(c, repack_fp8(w));
  const Fp8Act act = opt.act.value_or(op.default_act());
  const DType yt = in.dt;
  const size_t ybytes = size_t(in.M * shape.N) * dtype_size(yt);
  op.can_implement(in.M, xt, yt, xbytes.size(), ybytes, act);
  const VariantRow& row = op.choose(in.M, act, a.variant);
  cl::Buffer dx = c.alloc(xbytes.size(), CL_MEM_READ_ONLY), dy = c.alloc(ybytes);
  c.write(dx, xbytes.data(), xbytes.size());
  OpEvents ev = op.run(dx, xt, dy, yt, in.M, opt);
  c.finish();
  std::vector<uint8_t> y(ybytes);
  c.read(dy, y.data(), ybytes);
  std::cerr << "gemm: " << P << " " << layer.describe() << ", activations " << fp8_act_name(act) << ", M=" << in.M
            << " K=" << shape.K << " N=" << shape.N << " " << dtype_name(yt) << ", " << row.op << "/" << row.variant
            << ", " << ev.ms() << " ms device\n";
  print_setup(t_setup, ev);
  const int rc =
      a.check ? check_against(y, yt, fp8_gemm_reference(w, xbytes.data(), xt, in.M, act), Fp8Problem::kTolerance) : 0;
  write_output(a, y, yt, in.M, shape.N, inputs);
  return rc;
}
// One GGUF layer: the blocks go to the device as stored and are decoded in the kernels.
int run_gguf_gemm(Context& c, const GemmArgs& a, const LinearLayer& layer) {
  const std::string& P = layer.prefix;
  if (!a.act_dtype.empty()) fail(Status::kInvalidArgument, "--act-dtype applies to FP8 layers; '" + P + "' is GGUF");
  const GgufLinear& w = layer.gguf();
  std::vector<FileId> inputs;
  Input in = layer_input(a, layer, w.K, &inputs);
  const DType xt = in.dt;
  const size_t ybytes = size_t(in.M * w.N) * dtype_size(xt);
  const auto t_setup = std::chrono::steady_clock::now();
  GgufGemm op(c, w);
  op.can_implement(in.M, xt, xt, in.x->nbytes, ybytes);
  GgufRunOptions opt;
  opt.variant = a.variant;
  op.choose(in.M, opt);  // a bad --variant is refused before the upload of x
  cl::Buffer dx = c.alloc(in.x->nbytes, CL_MEM_READ_ONLY), dy = c.alloc(ybytes);
  c.write(dx, in.x->data, in.x->nbytes);
  OpEvents ev = op.run(dx, xt, dy, xt, in.M, opt);
  c.finish();
  std::vector<uint8_t> y(ybytes);
  c.read(dy, y.data(), ybytes);
  std::cerr << "gemm: " << P << " " << layer.describe() << ", M=" << in.M << " K=" << w.K << " N=" << w.N << " "
            << dtype_name(xt) << ", " << ev.row->op << "/" << ev.row->variant
            << (op.via_w4a16(opt) ? " (Q4_0 repacked as W4A16 group 32)" : "") << ", " << ev.ms() << " ms device\n";
  print_setup(t_setup, ev);
  const int rc = a.check ? check_against(y, xt, gemm_reference(in.x->data, xt, in.M, w.K, dequantize_gguf(w), w.N),
                                         GgufProblem::kTolerance)
                         : 0;
  write_output(a, y, xt, in.M, w.N, inputs);
  return rc;
}
}  // namespace

int run_quant_fp8(Context& c, const QuantFp8Args& a) {
  Input in = read_input(a.input);
  const std::vector<FileId> inputs = run_inputs(nullptr, in.file.get());
  check_output_path(a.output, inputs);
  Fp8Quantizer q(c);
  cl::Buffer dx = c.alloc(in.x->nbytes, CL_MEM_READ_ONLY);
  c.write(dx, in.x->data, in.x->nbytes);
  const Fp8Act mode = a.per_tensor  ? Fp8Act::kTensorDynamic
                      : a.per_token ? Fp8Act::kTokenDynamic
                                    : Fp8Act::kBlockDynamic;
  OpEvents ev = q.run(dx, in.dt, in.M, in.K, mode, std::nullopt);
  c.finish();
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  q.read(&codes, &scales);
  const int64_t Kb = (in.K + kFp8Block - 1) / kFp8Block;
  SafetensorsWriter out;
  out.add("input_fp8", StDType::kF8E4M3, {in.M, in.K}, codes.data(), codes.size());
  if (a.per_tensor) {
    out.add("input_scale", StDType::kF32, {}, scales.data(), 4);
  } else if (a.per_token) {
    std::vector<float> per_row(size_t(in.M));
    for (int64_t m = 0; m < in.M; ++m) per_row[size_t(m)] = scales[size_t(m * Kb)];  // every group holds it
    out.add("input_scale", StDType::kF32, {in.M, 1}, per_row.data(), per_row.size() * 4);
  } else
    out.add("input_scale", StDType::kF32, {in.M, Kb}, scales.data(), scales.size() * 4);
  out.write(a.output, inputs);
  std::cerr << "quant-fp8: [" << in.M << ", " << in.K << "] " << dtype_name(in.dt) << " -> e4m3, "
            << (a.per_tensor ? "one scale" : a.per_token ? "one scale per token" : "scales per token per 128 columns")
            << ", " << ev.ms() << " ms\n";
  return 0;
}

// One integer layer (W4A16Gemm or W8A16Int8Gemm) on the input: y in the input's dtype.
OpEvents run_int_layer(Context& c, IntLayerGemm& op, const Input& in, const std::string& variant,
                       std::vector<uint8_t>* y, const VariantRow** row) {
  const size_t ybytes = size_t(in.M * op.N()) * dtype_size(in.dt);
  op.can_implement(in.M, in.dt, in.dt, in.x->nbytes, ybytes);
  *row = &op.choose(in.M, variant);
  cl::Buffer dx = c.alloc(in.x->nbytes, CL_MEM_READ_ONLY);
  c.write(dx, in.x->data, in.x->nbytes);
  cl::Buffer dy = c.alloc(ybytes);
  W4A16RunOptions opt;
  opt.variant = variant;
  OpEvents ev = op.run(dx, in.dt, dy, in.dt, in.M, opt);
  c.finish();
  y->resize(ybytes);
  c.read(dy, y->data(), ybytes);
  return ev;
}

// int4 weights with e4m3 activations per token (W4A8, SPEC section 7).
int run_w4a8_gemm(Context& c, const GemmArgs& a, const LinearLayer& layer) {
  const std::string& P = layer.prefix;
  const W4Checkpoint& w = layer.w4().ck;
  const W4Shape& shape = layer.w4().shape;
  std::vector<FileId> inputs;
  Input in = layer_input(a, layer, shape.K, &inputs);
  const DType xt = in.dt;
  const int64_t M = in.M;
  const size_t ybytes = size_t(M * shape.N) * dtype_size(xt);
  const auto t_setup = std::chrono::steady_clock::now();
  W4A8Gemm op(c, w);
  W4A8RunOptions o;
  o.int4_variant = a.variant;  // --variant names the int4 kernel underneath
  op.can_implement(M, xt, xt, in.x->nbytes, ybytes, o);
  const VariantRow& int4 = op.int4_row(M, a.variant);
  cl::Buffer dx = c.alloc(in.x->nbytes, CL_MEM_READ_ONLY), dy = c.alloc(ybytes);
  c.write(dx, in.x->data, in.x->nbytes);
  OpEvents ev = op.run(dx, xt, dy, xt, M, o);
  c.finish();
  std::vector<uint8_t> y(ybytes);
  c.read(dy, y.data(), ybytes);
  std::cerr << "gemm: " << P << " " << layer.describe() << ", activations e4m3 per token (W4A8), M=" << M
            << " K=" << shape.K << " N=" << shape.N << " " << dtype_name(xt) << ", " << ev.row->op << "/"
            << ev.row->variant << " over " << int4.op << "/" << int4.variant << ", " << ev.ms() << " ms device\n";
  print_setup(t_setup, ev);
  // SPEC section 6: W4A8 is held to the fp8 GEMM's criterion (the same 1e-3 as W4A16).
  const int rc = a.check ? check_against(y, xt, w4a8_reference(w, in.x->data, xt, M, o.act), Fp8Problem::kTolerance) : 0;
  write_output(a, y, xt, M, shape.N, inputs);
  return rc;
}

// W8A8 int8: activations quantized per token on the device, exact int32 sums. --check compares
// with the host twin on the same quantized activations: every element must be equal.
int run_w8a8_gemm(Context& c, const GemmArgs& a, const LinearLayer& layer, const Input& in,
                  const std::vector<FileId>& inputs) {
  const auto t_setup = std::chrono::steady_clock::now();
  W8A8Int8Gemm op(c, repack_w8(layer.w4().ck));
  select_variant(W8A8Int8Gemm::kOp, c.features(), in.M, a.variant);  // a bad --variant is refused before any upload
  const size_t ybytes = size_t(in.M * op.N()) * dtype_size(in.dt);
  op.can_implement(in.M, in.dt, in.dt, in.x->nbytes, ybytes);
  cl::Buffer dx = c.alloc(in.x->nbytes, CL_MEM_READ_ONLY), dy = c.alloc(ybytes);
  c.write(dx, in.x->data, in.x->nbytes);
  W8A8Int8RunOptions opt;
  opt.variant = a.variant;
  OpEvents ev = op.run(dx, in.dt, dy, in.dt, in.M, opt);
  c.finish();
  std::vector<uint8_t> y(ybytes);
  c.read(dy, y.data(), ybytes);
  std::cerr << "gemm: " << layer.prefix << " " << layer.describe() << ", M=" << in.M << " K=" << op.K()
            << " N=" << op.N() << " " << dtype_name(in.dt) << ", " << ev.row->op << " variant " << ev.row->variant
            << ", " << ev.ms() << " ms device\n";
  print_setup(t_setup, ev);
  int rc = 0;
  if (a.check) {
    const std::vector<float> twin = w8a8_int8_host(op.weights(), quantize_int8_act_host(in.x->data, in.dt, in.M, op.K()));
    const size_t es = dtype_size(in.dt);
    size_t differ = 0, nan = 0;
    std::vector<uint8_t> want(es);
    for (size_t i = 0; i < twin.size(); ++i) {
      store_from_f32(want.data(), 0, in.dt, twin[i]);
      differ += std::memcmp(want.data(), y.data() + i * es, es) != 0;
      nan += std::isnan(load_as_f32(y.data(), i, in.dt));
    }
    const bool ok = differ == 0 && nan == 0;
    std::cerr << "check: " << differ << " of " << twin.size() << " outputs differ from the host twin (exact int32 sums), NaN "
              << nan << (ok ? "  PASS\n" : "  FAIL\n");
    rc = ok ? 0 : 1;
  }
  write_output(a, y, in.dt, in.M, op.N(), inputs);
  return rc;
}

namespace {
int run_layer(Context& c, const GemmArgs& a, const LinearLayer& layer);

// --quantize: the dense layer quantized on the device (weight_quant), then run as if loaded.
int run_quantized_gemm(Context& c, const GemmArgs& a) {
  if (!a.format.empty() || a.bits)
    fail(Status::kInvalidArgument, std::string(a.bits ? "--bits" : "--format") +
                                       " describes a quantized checkpoint; --quantize takes a dense layer");
  const QuantSpec spec = quant_spec_from(a.quantize, a.group_size, a.asym);
  auto ck = std::make_shared<const Checkpoint>(Checkpoint::open(a.weights));
  {  // the output is checked against every input before the device quantizes anything
    Input in = read_input(a.input);
    check_output_path(a.output, run_inputs(ck.get(), in.file.get()));
  }
  const OnlineQuantLayer q = quantize_linear(c, ck, a.prefix, spec);
  std::cerr << "quantize: " << a.prefix << ".weight [" << q.layer.N() << ", " << q.layer.K() << "] to " << quant_spec_text(spec)
            << " on the device (" << q.events.row->op << "/" << q.events.row->variant << ", " << q.events.ms()
            << " ms): rel error " << q.error.rel_fro() << ", max abs err " << q.error.max_abs << "\n";
  return run_layer(c, a, q.layer);
}
}  // namespace

int run_gemm(Context& c, const GemmArgs& a) {
  if (!a.quantize.empty()) return run_quantized_gemm(c, a);
  if (a.asym) fail(Status::kInvalidArgument, "--asym applies with --quantize int4|int8");
  LoadOptions lo;
  lo.format = a.format;
  lo.group_size = a.group_size;
  lo.bits = a.bits;
  return run_layer(c, a, load_linear(a.weights, a.prefix, lo));
}

namespace {
int run_layer(Context& c, const GemmArgs& a, const LinearLayer& layer) {
  if (layer.is_gguf()) return run_gguf_gemm(c, a, layer);
  if (!layer.is_int4()) {
    if (a.act_dtype == "fp8")
      fail(Status::kInvalidArgument, "--act-dtype fp8: FP8 layers quantize activations to e4m3 already (the default)");
    return run_fp8_gemm(c, a, layer);
  }
  const std::string& P = layer.prefix;
  if (a.act_dtype == "fp8" && !layer.is_int8() && !layer.is_w8a8()) return run_w4a8_gemm(c, a, layer);
  if (!a.act_dtype.empty())
    fail(Status::kInvalidArgument, "--act-dtype applies to FP8 layers; '" + P + "' is " + (layer.is_int8() ? "int8" : "int4"));
  const W4Checkpoint& w = layer.w4().ck;
  const W4Shape& shape = layer.w4().shape;

  std::vector<FileId> inputs;
  Input in = layer_input(a, layer, shape.K, &inputs);
  const StTensor* x = in.x;
  if (layer.is_w8a8()) return run_w8a8_gemm(c, a, layer, in, inputs);
  const auto t_setup = std::chrono::steady_clock::now();
  std::vector<uint8_t> y;
  const VariantRow* row = nullptr;
  const OpEvents ev = run_int_layer(c, *make_int_layer_gemm(c, w), in, a.variant, &y, &row);
  const DType xt = in.dt;
  const int64_t M = in.M;
  std::cerr << "gemm: " << P << " " << layer.describe() << ", M=" << M << " K=" << shape.K << " N=" << shape.N << " "
            << dtype_name(xt) << ", " << row->op << " variant " << row->variant << ", " << ev.ms() << " ms device\n";
  print_setup(t_setup, ev);
  // Both integer ops share SPEC section 6's criterion.
  static_assert(W4A16Problem::kTolerance == W8A16Int8Problem::kTolerance, "one criterion for int4 and int8");
  const int rc = a.check ? check_against(y, xt, gemm_reference(x->data, xt, M, shape.K, dequantize_w4(w), shape.N),
                                         W4A16Problem::kTolerance)
                         : 0;
  write_output(a, y, xt, M, shape.N, inputs);
  return rc;
}
}  // namespace

}  // namespace clq::cli
