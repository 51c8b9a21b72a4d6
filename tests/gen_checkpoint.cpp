// Test-data generator for the command-line tests.
//
//   gen_checkpoint DIR FORMAT K N GROUP ACT M DTYPE SEED [noconfig]
//     FORMAT gptq | gptq_v2 | awq | compressed-tensors: a real-format int4 layer from random
//     weights (gptq:8, gptq_v2:8, compressed-tensors:8, int-quantized: int8 weight-only;
//     w8a8-int: int-quantized per-channel symmetric with per-token int8 activations), plus
//     DIR/quantize_config.json (unless noconfig); FORMAT fp8_block | fp8_tensor: an e4m3 layer
//     (GROUP and ACT ignored; fp8_tensor carries a static input_scale). Always writes
//     DIR/model.safetensors (prefix model.layers.0.mlp.down_proj) and DIR/input.safetensors.
//     FORMAT moe_dense | moe_int4 | moe_fp8: a MoE block under model.layers.3.mlp (K = H,
//     N = I, GROUP = E, ACT = 1 adds DeepSeek's e_score_correction_bias; int4 experts are GPTQ
//     group 64, with quantize_config.json). A suffix adds shared experts: FORMAT+ds DeepSeek-V3's
//     shared_experts (intermediate 2 N), FORMAT+qwen Qwen2-MoE's gated shared_expert (3 N);
//     moe_int4+actorder: GPTQ act-order experts (random g_idx per expert and projection);
//     moe_fp8+ue8m0: F8_E8M0 block scales and a config.json with scale_fmt ue8m0.
//     moe_int8: GPTQ 8-bit experts (v1, group 64, quantize_config.json with bits 8; +actorder
//     too); moe_int8_ct: compressed-tensors int-quantized int8 experts, per channel, symmetric,
//     Mixtral names (w1/w3/w2), config.json's quantization_config.
//     FORMAT dense: an unquantized checkpoint in DTYPE for `clquant quantize` (GROUP and ACT
//     ignored): model.layers.0.mlp.down_proj.weight [N, K], model.layers.0.self_attn.q_proj.weight
//     [128, K], model.embed_tokens.weight and lm_head.weight [64, K], two norms [K], and a
//     config.json without a quantization_config.
//   gen_checkpoint model DIR [huge-scale|nan-scale]
//     the four-layer sharded model of host/synth/synth_model.h (optionally with one layer damaged).
//   gen_checkpoint check-quant X.safetensors Q.safetensors [per-tensor]
//     checks `clquant quant-fp8` output against the host quantizer (SPEC section 4 allowance).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "host/formats/moe.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/io/safetensors.h"
#include "host/io/gguf.h"
#include "host/synth/synth.h"
#include "host/synth/synth_model.h"
#include "runtime/status.h"

using namespace clq;

namespace {
int check_quant(const std::string& xpath, const std::string& qpath, bool per_tensor, bool per_token) {
  auto xf = SafetensorsFile::open(xpath);
  auto qf = SafetensorsFile::open(qpath);
  const StTensor* x = xf->find("input");
  const StTensor* q = qf->find("input_fp8");
  const StTensor* s = qf->find("input_scale");
  if (!x || !q || !s || q->dtype != StDType::kF8E4M3 || s->dtype != StDType::kF32 || q->shape != x->shape) {
    std::cerr << "check-quant: missing or mistyped tensors\n";
    return 1;
  }
  DType dt = x->dtype == StDType::kBF16 ? DType::kBF16 : x->dtype == StDType::kF32 ? DType::kF32 : DType::kF16;
  auto h = quantize_fp8_host(x->data, dt, x->shape[0], x->shape[1],
                             per_tensor  ? Fp8Act::kTensorDynamic
                             : per_token ? Fp8Act::kTokenDynamic
                                         : Fp8Act::kBlockDynamic);
  if (per_token) {  // one scale per row: the host twin repeats it in every group
    std::vector<float> rows(size_t(h.M));
    for (int64_t m = 0; m < h.M; ++m) rows[size_t(m)] = h.scales[size_t(m * h.Kb)];
    h.scales = rows;
  }
  size_t want_scales = per_tensor ? 1 : h.scales.size();
  if (s->nbytes != want_scales * 4) {
    std::cerr << "check-quant: input_scale has " << s->nbytes / 4 << " values, expected " << want_scales << "\n";
    return 1;
  }
  size_t off = 0;
  for (size_t i = 0; i < h.codes.size(); ++i)
    if (q->data[i] != h.codes[i]) {
      if (std::abs(int(q->data[i] & 0x7F) - int(h.codes[i] & 0x7F)) != 1) {
        std::cerr << "check-quant: code " << i << " differs by more than one ulp\n";
        return 1;
      }
      ++off;
    }
  for (size_t i = 0; i < want_scales; ++i) {
    float v;
    std::memcpy(&v, s->data + 4 * i, 4);
    if (v != h.scales[i]) {
      std::cerr << "check-quant: scale " << i << " = " << v << ", host " << h.scales[i] << "\n";
      return 1;
    }
  }
  if (double(off) > 0.001 * double(h.codes.size())) {
    std::cerr << "check-quant: " << off << " codes one ulp off (> 0.1%)\n";
    return 1;
  }
  std::cout << "check-quant: PASS (" << h.codes.size() << " codes, " << off << " one ulp off)\n";
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 4 && std::string(argv[1]) == "check-quant")
      return check_quant(argv[2], argv[3], argc > 4 && std::string(argv[4]) == "per-tensor",
                         argc > 4 && std::string(argv[4]) == "per-token");
    if (argc >= 3 && std::string(argv[1]) == "model") {
      SynthModelSpec m;
      if (argc > 3) m.corrupt = argv[3];
      write_synthetic_model(argv[2], m);
      return 0;
    }
    if (argc < 10) {
      std::cerr << "usage: gen_checkpoint DIR FORMAT K N GROUP ACT M DTYPE SEED [noconfig]\n"
                   "       gen_checkpoint model DIR [huge-scale|nan-scale]\n"
                   "       gen_checkpoint check-quant X.safetensors Q.safetensors [per-tensor|per-token]\n";
      return 2;
    }
    std::string dir = argv[1], fmt = argv[2];
    int64_t K = std::atoll(argv[3]), N = std::atoll(argv[4]);
    int group = std::atoi(argv[5]);
    bool act = std::atoi(argv[6]) != 0;
    int64_t M = std::atoll(argv[7]);
    std::string dt = argv[8];
    uint64_t seed = std::strtoull(argv[9], nullptr, 10);
    bool config = !(argc > 10 && std::string(argv[10]) == "noconfig");
    DType t = dt == "bf16" ? DType::kBF16 : dt == "f32" ? DType::kF32 : DType::kF16;
    SafetensorsWriter w;
    const std::string prefix = "model.layers.0.mlp.down_proj";
    auto st_of = [](DType d) {
      return d == DType::kBF16 ? StDType::kBF16 : d == DType::kF32 ? StDType::kF32 : StDType::kF16;
    };
    if (fmt == "dense") {
      uint64_t i = 0;
      auto dense = [&](const std::string& name, std::vector<int64_t> shape) {
        const int64_t rows = shape.size() == 2 ? shape[0] : 1, cols = shape.back();
        const auto v = random_activations(rows, cols, t, seed + 100 * ++i);
        w.add(name, st_of(t), shape, v.data(), v.size());
      };
      dense(prefix + ".weight", {N, K});
      dense("model.layers.0.self_attn.q_proj.weight", {128, K});
      dense("model.embed_tokens.weight", {64, K});
      dense("lm_head.weight", {64, K});
      dense("model.layers.0.input_layernorm.weight", {K});
      dense("model.norm.weight", {K});
      w.write(dir + "/model.safetensors");
      std::ofstream(dir + "/config.json") << R"({"model_type": "llama", "hidden_size": )" << K
                                          << R"(, "torch_dtype": ")" << (t == DType::kBF16 ? "bfloat16" : t == DType::kF32 ? "float32" : "float16")
                                          << R"("})";
    } else if (fmt.rfind("moe_", 0) == 0) {
      MoeSynthSpec s;
      bool ue8m0 = false;
      for (size_t plus; (plus = fmt.rfind('+')) != std::string::npos;) {
        const std::string opt = fmt.substr(plus + 1);
        if (opt == "ds" || opt == "qwen") {
          s.shared_I = opt == "ds" ? 2 * N : 3 * N;
          s.shared_gate = opt == "qwen";
        } else if (opt == "actorder") {
          s.act_order = true;
        } else if (opt == "ue8m0") {
          ue8m0 = true;  // config.json scale_fmt ue8m0, block scales stored as F8_E8M0
          s.fp8_e8m0_scales = true;
        } else {
          throw Error(Status::kInvalidArgument, "bad MoE option " + opt + " (ds, qwen, actorder, ue8m0)");
        }
        fmt = fmt.substr(0, plus);
      }
      s.kind = fmt == "moe_int4"                          ? MoeWeightKind::kInt4
               : fmt == "moe_int8" || fmt == "moe_int8_ct" ? MoeWeightKind::kInt8
               : fmt == "moe_fp8"                         ? MoeWeightKind::kFp8
                                                          : MoeWeightKind::kDense;
      if (fmt == "moe_int8_ct") {
        s.int4_format = W4Format::kCompressedTensors;
        s.group_size = -1;
        s.symmetric = true;
        s.mixtral_names = true;
      }
      s.H = K;
      s.I = N;
      s.E = group;
      s.bias = act;
      s.seed = seed;
      MoeSynth synth(s);
      synth.add_to(w, "model.layers.3.mlp");
      w.write(dir + "/model.safetensors");
      if (s.kind == MoeWeightKind::kInt4 && config)
        std::ofstream(dir + "/quantize_config.json")
            << R"({"bits": 4, "group_size": 64, "desc_act": )" << (s.act_order ? "true" : "false")
            << R"(, "quant_method": "gptq", "checkpoint_format": "gptq"})";
      if (s.kind == MoeWeightKind::kInt8 && config) {
        if (fmt == "moe_int8_ct")
          std::ofstream(dir + "/config.json") << R"({"quantization_config": )" << synth.quantize_config_json() << "}";
        else
          std::ofstream(dir + "/quantize_config.json") << synth.quantize_config_json();
      }
      if (ue8m0)
        std::ofstream(dir + "/config.json")
            << R"({"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", )"
               R"("weight_block_size": [128, 128], "scale_fmt": "ue8m0"}})";
    } else if (fmt.rfind("gguf_", 0) == 0) {
      // A GGUF file with one linear layer blk.0.ffn_down.weight of the named block type.
      const std::string ty = fmt.substr(5);
      const uint32_t type = ty == "q4_0" ? 2 : ty == "q8_0" ? 8 : ty == "q4_k" ? 12 : ty == "q6_k" ? 14 : 0;
      if (!type) throw Error(Status::kInvalidArgument, "bad GGUF type " + ty + " (q4_0, q8_0, q4_k, q6_k)");
      GgufWriter g;
      g.add_string("general.architecture", "llama");
      g.add_u32("general.alignment", 32);
      g.add_tensor("blk.0.ffn_down.weight", type, {K, N}, random_gguf_blocks(type, N, K, seed));
      g.write(dir + "/model.gguf");
    } else if (fmt == "fp8_block" || fmt == "fp8_tensor" || fmt == "fp8_channel" || fmt == "fp8_channel_static" ||
               fmt == "fp8_ct_block") {
      // fp8_channel*: compressed-tensors channel strategy (weight_scale [N, 1]), dynamic or static
      // activations; fp8_ct_block: block scales under compressed-tensors' name weight_scale.
      Fp8SynthSpec s;
      s.N = N;
      s.K = K;
      s.block = fmt == "fp8_block" || fmt == "fp8_ct_block";
      s.ct_names = fmt == "fp8_ct_block";
      s.channel = fmt.rfind("fp8_channel", 0) == 0;
      s.with_input_scale = fmt == "fp8_tensor" || fmt == "fp8_channel_static";
      s.seed = seed;
      Fp8Synth synth(s);
      synth.add_to(w, prefix);
      w.write(dir + "/model.safetensors");
    } else {
      W4SynthSpec s;
      // FORMAT:8 (gptq:8, gptq_v2:8, compressed-tensors:8) writes the 8-bit layout; int-quantized
      // is compressed-tensors int8 with an I8 weight.
      if (fmt == "int-quantized" || fmt == "w8a8-int") {
        s.w8a8_config = fmt == "w8a8-int";  // W8A8 int8: per-channel symmetric, activations per token
        s.symmetric = s.w8a8_config;
        fmt = "compressed-tensors";
        s.ct_int_quantized = true;
        s.bits = 8;
      }
      if (fmt.size() > 2 && fmt.compare(fmt.size() - 2, 2, ":8") == 0) {
        fmt.resize(fmt.size() - 2);
        s.bits = 8;
      }
      if (!w4_format_from_name(fmt, &s.format)) throw Error(Status::kInvalidArgument, "bad format " + fmt);
      s.K = K;
      s.N = N;
      s.group_size = group;
      s.act_order = act;
      s.seed = seed;
      W4Synth synth(s);
      synth.add_to(w, prefix);
      w.write(dir + "/model.safetensors");
      if (config) std::ofstream(dir + "/quantize_config.json") << synth.quantize_config_json();
    }
    auto x = random_activations(M, K, t, seed + 1);
    SafetensorsWriter xi;
    xi.add("input",
           t == DType::kBF16  ? StDType::kBF16
           : t == DType::kF32 ? StDType::kF32
                              : StDType::kF16,
           {M, K}, x.data(), x.size());
    xi.write(dir + "/input.safetensors");
  } catch (const std::exception& e) {
    std::cerr << "gen_checkpoint: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
