// Test-data generator: writes a real-format GPTQ/AWQ layer from random weights, plus an input.
//   gen_w4_checkpoint DIR FORMAT K N GROUP ACT(0|1) M DTYPE(f16|bf16|f32) SEED [noconfig]
// DIR/model.safetensors holds model.layers.0.mlp.down_proj.{qweight,qzeros,scales[,g_idx]},
// DIR/quantize_config.json the settings (unless noconfig), DIR/input.safetensors `input` [M, K].
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "host/safetensors.h"
#include "host/synth.h"
#include "runtime/status.h"

int main(int argc, char** argv) {
  using namespace clq;
  if (argc < 10) {
    std::cerr << "usage: gen_w4_checkpoint DIR FORMAT K N GROUP ACT M DTYPE SEED [noconfig]\n";
    return 2;
  }
  try {
    std::string dir = argv[1];
    W4SynthSpec s;
    if (!w4_format_from_name(argv[2], &s.format)) throw Error(Status::kInvalidArgument, "bad format");
    s.K = std::atoll(argv[3]);
    s.N = std::atoll(argv[4]);
    s.group_size = std::atoi(argv[5]);
    s.act_order = std::atoi(argv[6]) != 0;
    int64_t M = std::atoll(argv[7]);
    std::string dt = argv[8];
    s.seed = std::strtoull(argv[9], nullptr, 10);
    DType t = dt == "bf16" ? DType::kBF16 : dt == "f32" ? DType::kF32 : DType::kF16;
    W4Synth synth(s);
    SafetensorsWriter w;
    synth.add_to(w, "model.layers.0.mlp.down_proj");
    w.write(dir + "/model.safetensors");
    if (argc < 11 || std::string(argv[10]) != "noconfig")
      std::ofstream(dir + "/quantize_config.json") << synth.quantize_config_json();
    auto x = random_activations(M, s.K, t, s.seed + 1);
    SafetensorsWriter xi;
    xi.add("input",
           t == DType::kBF16  ? StDType::kBF16
           : t == DType::kF32 ? StDType::kF32
                              : StDType::kF16,
           {M, s.K}, x.data(), x.size());
    xi.write(dir + "/input.safetensors");
  } catch (const std::exception& e) {
    std::cerr << "gen_w4_checkpoint: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
