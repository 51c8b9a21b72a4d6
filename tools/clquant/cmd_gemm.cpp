// clquant gemm: one quantized linear layer from a checkpoint, applied to activations from a file.
#include <iostream>

#include "host/formats/quant_config.h"
#include "host/formats/w4.h"
#include "host/ops/w4a16_gemm.h"
#include "host/reference.h"
#include "host/safetensors.h"
#include "runtime/status.h"
#include "tools/clquant/commands.h"

namespace clq::cli {

CLI::App* add_gemm_command(CLI::App& app, GemmArgs& a) {
  auto* cmd = app.add_subcommand("gemm", "y = x @ W for one quantized layer (GPTQ v1/v2, AWQ int4)");
  cmd->add_option("--weights", a.weights, "checkpoint: .safetensors, model.safetensors.index.json, or their folder")
      ->required();
  cmd->add_option("--prefix", a.prefix, "layer prefix P, e.g. model.layers.0.mlp.down_proj")->required();
  cmd->add_option("--input", a.input, "safetensors file with tensor 'input' [M, K] (F16, BF16 or F32)")->required();
  cmd->add_option("--output", a.output, "safetensors file to write tensor 'output' [M, N] (input's dtype)")->required();
  cmd->add_option("--format", a.format,
                  "gptq | gptq_v2 | awq (default: quantize_config.json / config.json beside the weights, "
                  "else the tensor shapes where unambiguous)");
  cmd->add_option("--group-size", a.group_size, "group size, -1 for one group (default: config, else shapes)");
  cmd->add_option("--variant", a.variant, "force a kernel variant (see clquant caps)");
  cmd->add_flag("--check", a.check, "also compute the fp64 host reference and fail (exit 1) beyond tolerance");
  return cmd;
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
}  // namespace

int run_gemm(Context& c, const GemmArgs& a) {
  Checkpoint ck = Checkpoint::open(a.weights);
  const std::string P = a.prefix;
  W4Checkpoint w;
  w.qweight = ck.find(P + ".qweight");
  if (!w.qweight) {
    if (ck.find(P + ".weight"))
      fail(Status::kNotSupported,
           "layer '" + P + "' holds '" + P + ".weight' but no '.qweight': only int4 (GPTQ/AWQ) layers run here yet");
    fail(Status::kFormatError, "checkpoint has no tensor '" + P + ".qweight' (is --prefix right?)");
  }
  w.qzeros = &ck.require(P + ".qzeros");
  w.scales = &ck.require(P + ".scales");
  w.g_idx = ck.find(P + ".g_idx");

  // Format: --format, else the config beside the weights, else the shapes where they decide it.
  std::string how;
  auto cfg = read_quant_config(ck.dir());
  if (!a.format.empty()) {
    if (!w4_format_from_name(a.format, &w.format))
      fail(Status::kInvalidArgument, "--format '" + a.format + "' is not one of gptq, gptq_v2, awq");
    how = "--format";
  } else if (cfg && cfg->format) {
    w.format = *cfg->format;
    how = cfg->source;
  } else {
    const auto& qs = w.qweight->shape;
    const auto& ss = w.scales->shape;
    if (qs.size() == 2 && ss.size() == 2 && qs[1] * 8 == ss[1]) {
      w.format = W4Format::kAwq;
      how = "shapes (qweight packed along N)";
    } else if (qs.size() == 2 && ss.size() == 2 && qs[1] == ss[1]) {
      fail(Status::kInvalidArgument,
           "'" + P + ".qweight' " + w.qweight->shape_str() +
               " is GPTQ-packed, but v1 (zero-1 stored) and v2 cannot be told apart by shapes: "
               "pass --format gptq or --format gptq_v2, or put quantize_config.json beside the weights");
    } else {
      fail(Status::kInvalidShape, "cannot recognise the int4 format from qweight " + w.qweight->shape_str() +
                                      " and scales " + w.scales->shape_str() + "; pass --format");
    }
  }
  if (w.format == W4Format::kAwq) w.g_idx = nullptr;  // AWQ files carry no g_idx; a stray one is ignored
  if (a.group_size != 0)
    w.group_size = a.group_size;
  else if (cfg && cfg->group_size)
    w.group_size = *cfg->group_size;
  W4Shape shape = validate_w4(w);

  auto xf = SafetensorsFile::open(a.input);
  const StTensor* x = xf->find("input");
  if (!x) fail(Status::kFormatError, "input file '" + a.input + "' has no tensor named 'input'");
  if (x->shape.size() != 2 || x->shape[1] != shape.K)
    fail(Status::kInvalidShape,
         "input " + x->shape_str() + " must be [M, K] with K = " + std::to_string(shape.K) + " (from " + P + ")");
  const DType xt = act_dtype(*x);
  const int64_t M = x->shape[0];
  if (M < 1) fail(Status::kInvalidShape, "input " + x->shape_str() + " has no rows");

  W4A16Gemm op(c, repack_w4(w));
  op.can_implement(M, xt, xt, x->nbytes, size_t(M * shape.N) * dtype_size(xt));
  W4A16RunOptions opt;
  opt.variant = a.variant;
  const VariantRow& row = op.choose(M, a.variant);
  cl::Buffer dx = c.alloc(x->nbytes, CL_MEM_READ_ONLY);
  c.write(dx, x->data, x->nbytes);
  const size_t ybytes = size_t(M * shape.N) * dtype_size(xt);
  cl::Buffer dy = c.alloc(ybytes);
  OpEvents ev = op.run(dx, xt, dy, xt, M, opt);
  c.finish();
  std::vector<uint8_t> y(ybytes);
  c.read(dy, y.data(), ybytes);

  int rc = 0;
  std::cerr << "gemm: " << P << " " << w4_format_name(w.format) << " (from " << how << "), group " << shape.group_size
            << (shape.has_g_idx ? ", g_idx" : "") << ", M=" << M << " K=" << shape.K << " N=" << shape.N << " "
            << dtype_name(xt) << ", variant " << row.variant << ", " << ev.ms() << " ms\n";
  if (a.check) {
    auto ref = gemm_reference(x->data, xt, M, shape.K, dequantize_w4(w), shape.N);
    ErrorStats e = compare_output(y.data(), xt, ref);
    bool ok = e.nan_count == 0 && e.rel_mean() < W4A16Problem::kTolerance;
    std::cerr << "check: rel mean err " << e.rel_mean() << ", max abs err " << e.max_abs_err << ", NaN " << e.nan_count
              << (ok ? "  PASS\n" : "  FAIL\n");
    rc = ok ? 0 : 1;
  }
  SafetensorsWriter out;
  out.add("output", st_of(xt), {M, shape.N}, y.data(), y.size());
  out.write(a.output);
  return rc;
}

}  // namespace clq::cli
