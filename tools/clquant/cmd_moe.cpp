// clquant moe: one fused mixture-of-experts layer from a Hugging Face checkpoint.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <optional>

#include "host/formats/loader.h"
#include "host/model/quantize.h"
#include "host/ops/moe/moe_block.h"
#include "host/io/safetensors.h"
#include "runtime/status.h"
#include "tools/clquant/commands.h"

namespace clq::cli {

CLI::App* add_moe_command(CLI::App& app, MoeArgs& a) {
  auto* cmd = app.add_subcommand(
      "moe", "fused MoE layer: routing, expert GEMMs with SwiGLU, weighted combine (SPEC section 5)");
  cmd->add_option("--weights", a.weights, "checkpoint: .safetensors, model.safetensors.index.json, or their folder")
      ->required();
  cmd->add_option("--prefix", a.prefix,
                  "MoE block prefix P (P.gate.weight, P.experts.{e}.gate_proj|up_proj|down_proj; P.shared_experts.* "
                  "or P.shared_expert.* + P.shared_expert_gate when present)")
      ->required();
  cmd->add_option("--input", a.input, "safetensors file with tensor 'input' [T, H] (F16, BF16 or F32)")->required();
  cmd->add_option("--output", a.output, "safetensors file to write 'output' [T, H] (input's dtype)")->required();
  cmd->add_option("--top-k", a.top_k, "experts per token (default: config.json's num_experts_per_tok)")
      ->check(integer_in(1, 1024));
  cmd->add_flag("--renormalize", a.renormalize, "divide the chosen weights by their sum (default: the model family's rule)");
  cmd->add_flag("--no-renormalize", a.no_renormalize, "keep the chosen weights as they are");
  cmd->add_option("--routing", a.routing,
                  "softmax (Mixtral, Qwen-MoE) or grouped (DeepSeek-V3 noaux_tc); default: config.json's model_type, "
                  "else softmax")
      ->check(CLI::IsMember({"softmax", "grouped"}));
  cmd->add_option("--n-group", a.n_group, "grouped: expert groups")->check(integer_in(1, 1024));
  cmd->add_option("--topk-group", a.topk_group, "grouped: groups kept")->check(integer_in(1, 1024));
  cmd->add_option("--routed-scaling", a.routed_scaling, "grouped: routed_scaling_factor")->check(positive_finite());
  cmd->add_option("--scoring", a.scoring, "grouped: sigmoid (default) or softmax scores")
      ->check(CLI::IsMember({"sigmoid", "softmax"}));
  cmd->add_option("--format", a.format,
                  "int4 / int8 experts: gptq | gptq_v2 | awq (int4 only) | compressed-tensors (default: "
                  "quantize_config.json / config.json; an I8 .weight is compressed-tensors int8)");
  cmd->add_option("--group-size", a.group_size, "int4 / int8 experts: group size (default: config, else shapes)")
      ->check(integer_in(1, 1 << 30, /*allow_minus_one=*/true));
  cmd->add_option("--bits", a.bits,
                  "integer experts' code width, 4 or 8 (default: quantize_config.json / config.json `bits`; GPTQ "
                  "experts without a config are read as 4-bit; an I8 .weight is 8-bit)")
      ->check(CLI::IsMember({4, 8}));
  cmd->add_option("--block-size", a.block_size, "rows per aligned block (power of two; default: chosen from T, k, E)")
      ->check(integer_in(1, 1 << 20));
  cmd->add_option("--variant", a.variant, "force the decode or the general path (default: the capability table's choice)")
      ->check(CLI::IsMember({"decode", "general"}));
  cmd->add_option("--quantize", a.quantize,
                  "quantize the dense experts (and shared experts) on the device first, round to nearest: int4 "
                  "or int8 (--group-size G, default 128; --asym) or fp8-block; prints the quantization error")
      ->check(CLI::IsMember({"int4", "int8", "fp8-block"}));
  cmd->add_flag("--asym", a.asym, "with --quantize int4 or int8: asymmetric codes (a zero point per group)");
  cmd->add_flag("--check", a.check,
                "also compute the fp64 reference (with the device's logits) and fail beyond tolerance");
  return cmd;
}

int run_moe(Context& c, const MoeArgs& a) {
  LoadOptions lo;
  lo.format = a.format;
  lo.group_size = a.quantize.empty() ? a.group_size : 0;
  lo.bits = a.bits;
  if (a.bits && !a.quantize.empty())
    fail(Status::kInvalidArgument, "--bits describes quantized experts; --quantize takes dense ones");
  if (a.asym && a.quantize.empty()) fail(Status::kInvalidArgument, "--asym applies with --quantize int4|int8");
  if (!a.quantize.empty() && !a.format.empty())
    fail(Status::kInvalidArgument, "--format describes quantized experts; --quantize takes dense ones");
  const MoeLayer loaded = load_moe(a.weights, a.prefix, lo);
  // --quantize: the dense experts quantized on the device (weight_quant) before the block is built.
  std::optional<OnlineQuantMoe> quantized;
  if (!a.quantize.empty()) {
    const QuantSpec spec = quant_spec_from(a.quantize, a.group_size, a.asym);
    {  // the output is checked against every input before the device quantizes anything
      auto xf = SafetensorsFile::open(a.input);
      check_output_path(a.output, run_inputs(loaded.checkpoint.get(), xf.get()));
    }
    quantized.emplace(quantize_moe(c, loaded, spec));
    std::cerr << "quantize: " << a.prefix << " experts to " << quant_spec_text(spec) << " on the device ("
              << quantized->device_ms << " ms): rel error " << quantized->error.rel_fro() << ", max abs err "
              << quantized->error.max_abs << "\n";
  }
  const MoeLayer& layer = quantized ? quantized->layer : loaded;
  const MoeCheckpoint& m = layer.moe;

  auto xf = SafetensorsFile::open(a.input);
  const StTensor* x = xf->find("input");
  if (!x) fail(Status::kFormatError, "input file '" + a.input + "' has no tensor named 'input'");
  const std::vector<FileId> inputs = run_inputs(layer.checkpoint.get(), xf.get());
  check_output_path(a.output, inputs);
  if (x->shape.size() != 2 || x->shape[0] < 1 || x->shape[1] != m.H)
    fail(Status::kInvalidShape, "input " + x->shape_str() + " must be [T, H] with H = " + std::to_string(m.H));
  DType xt;
  switch (x->dtype) {
    case StDType::kF16:
      xt = DType::kF16;
      break;
    case StDType::kBF16:
      xt = DType::kBF16;
      break;
    case StDType::kF32:
      xt = DType::kF32;
      break;
    default:
      fail(Status::kFormatError,
           "tensor 'input' has dtype " + std::string(st_dtype_name(x->dtype)) + "; expected F16, BF16 or F32");
  }
  const int64_t T = x->shape[0];
  // The family's routing from config.json, then every flag given on top of it.
  MoeRouting r = layer.config ? moe_routing_from_config(*layer.config) : MoeRouting{};
  if (!layer.config) r.top_k = 0;
  if (a.top_k > 0) r.top_k = a.top_k;
  if (a.renormalize && a.no_renormalize)
    fail(Status::kInvalidArgument, "--renormalize and --no-renormalize contradict each other");
  if (a.renormalize) r.renormalize = true;
  if (a.no_renormalize) r.renormalize = false;
  if (a.routing == "grouped") r.kind = MoeRouting::Kind::kGrouped;
  if (a.routing == "softmax") r.kind = MoeRouting::Kind::kSoftmax;
  if (a.n_group > 0) r.n_group = a.n_group;
  if (a.topk_group > 0) r.topk_group = a.topk_group;
  if (a.routed_scaling > 0) r.routed_scaling = a.routed_scaling;
  if (!a.scoring.empty()) r.softmax_scores = a.scoring == "softmax";
  if (r.top_k < 1)
    fail(Status::kInvalidArgument, "--top-k is needed: " +
                                       (layer.config ? layer.config->source + " has no num_experts_per_tok"
                                                     : std::string("no config.json with a known MoE model_type beside the weights")));
  if (layer.config)
    std::cerr << "moe: routing from " << layer.config->source << " (model_type " << layer.config->model_type
              << ")\n";
  const bool grouped = r.kind == MoeRouting::Kind::kGrouped;
  if (!grouped && m.bias) {
    std::cerr << "moe: note: the layer has e_score_correction_bias, which only grouped routing uses\n";
  }
  MoeRunOptions o;
  o.block_size = a.block_size;
  o.variant = a.variant;
  const auto t_setup = std::chrono::steady_clock::now();
  MoeBlock op(c, m);
  const size_t ybytes = size_t(T * m.H) * dtype_size(xt);
  op.can_implement(T, xt, xt, x->nbytes, ybytes, r, o);
  cl::Buffer dx = c.alloc(x->nbytes, CL_MEM_READ_ONLY), dy = c.alloc(ybytes);
  c.write(dx, x->data, x->nbytes);
  OpEvents ev = op.run(dx, xt, dy, xt, T, r, o);
  c.finish();
  const double setup_ms = std::max(
      0.0, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_setup).count() - ev.ms());
  std::vector<uint8_t> y(ybytes);
  c.read(dy, y.data(), ybytes);
  std::cerr << "moe: " << a.prefix << " E=" << m.E << " H=" << m.H << " I=" << m.I << " " << moe_kind_name(m.kind)
            << (moe_uses_act_order(m) ? " act-order" : "") << (m.ue8m0_act_scales ? " (ue8m0 activation scales)" : "")
            << " experts, T=" << T << " top-" << r.top_k << " " << (grouped ? "grouped" : "softmax")
            << " routing, block " << (o.block_size ? o.block_size : op.routed().block_size_for(T, r.top_k));
  if (m.shared)
    std::cerr << ", shared experts I=" << m.shared->I << " " << moe_kind_name(m.shared->kind)
              << (m.shared_gate ? " (sigmoid-gated)" : "");
  if (ev.row) std::cerr << ", " << ev.row->op << "/" << ev.row->variant;
  std::cerr << ", " << ev.ms() << " ms device\n";
  std::cerr << "setup: " << setup_ms
            << " ms wall apart from the op (expert repack and upload, kernel build or cache load)\n";
  int rc = 0;
  if (a.check) {
    std::vector<float> logits, hw;
    std::vector<int> hids;
    op.routed().read_logits(&logits);
    moe_route_host(logits, T, m.E, r, m.bias ? reinterpret_cast<const float*>(m.bias->data) : nullptr, &hids, &hw);
    auto ref = moe_block_reference(m, x->data, xt, T, hids, hw, r.top_k);
    ErrorStats e = compare_output(y.data(), xt, ref);
    bool ok = MoeProblem::within_tolerance(e);
    std::cerr << "check: rel mean err " << e.rel_mean() << ", max abs err " << e.max_abs_err << ", NaN " << e.nan_count
              << (ok ? "  PASS\n" : "  FAIL\n");
    rc = ok ? 0 : 1;
  }
  SafetensorsWriter out;
  out.add("output", x->dtype, {T, m.H}, y.data(), y.size());
  out.write(a.output, inputs);
  return rc;
}

}  // namespace clq::cli
