#include "bench/bench_gguf.h"

#include "host/formats/gguf.h"
#include "host/ops/gguf/gguf_gemm.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/synth/synth.h"

namespace clq::bench {

std::vector<Row> bench_gguf(Context& c, const GgufBenchConfig& cfg, std::ostream* progress) {
  auto shapes = cfg.shapes;
  auto ms = cfg.ms;
  if (shapes.empty())
    shapes = cfg.quick ? std::vector<std::pair<int64_t, int64_t>>{{1024, 1024}}
                       : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {14336, 4096}};
  if (ms.empty()) ms = cfg.quick ? std::vector<int64_t>{1, 16} : std::vector<int64_t>{1, 16, 64, 256};
  std::vector<Row> rows;
  for (auto [N, K] : shapes) {
    for (uint32_t type : {2u, 8u, 12u, 14u}) {
      if (K % ggml_type_info(type)->block) continue;
      auto blocks = random_gguf_blocks(type, N, K, uint64_t(N + K + type));
      GgufTensor t;
      t.name = "bench";
      t.type = type;
      t.ne = {K, N};
      t.data = blocks.data();
      t.nbytes = blocks.size();
      const GgufLinear l = validate_gguf_linear(t);
      GgufGemm op(c, l);
      for (int64_t M : ms) {
        auto x = random_activations(M, K, DType::kF16, uint64_t(M));
        cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
        c.write(dx, x.data(), x.size());
        const double flops = 2.0 * double(M) * double(N) * double(K);
        const std::string shape = std::to_string(N) + "x" + std::to_string(K) + " M=" + std::to_string(M);
        // Q4_0 twice: through W4A16 (what runs) and on the affine layout (what it would be otherwise).
        for (bool native : {false, true}) {
          GgufRunOptions opt;
          opt.variant = cfg.variant;
          opt.native = native;
          if (native && !op.via_w4a16({})) continue;
          double bytes = double(blocks.size());  // the file's bytes: what the layer is worth
          if (op.via_w4a16(opt)) {
            W4A16Problem p;  // what the W4A16 layout moves: nibbles, fp16 scales, byte zero points
            p.M = M, p.N = N, p.K = K, p.group_size = 32;
            bytes = p.bytes() - double(M) * double(K + N) * 2;
          }
          bytes += double(M) * double(K + N) * 2;
          const std::string label = std::string(ggml_type_name(type)) + (op.via_w4a16(opt) ? " as w4a16 g32 " :
                                    type == 2 ? " native " : " ") + shape;
          rows.push_back(measure_case(
              c, "gguf", label, op.choose(M, opt).variant, M, N, K, flops, bytes,
              [&] { return op.run(dx, DType::kF16, dy, DType::kF16, M, opt); }, cfg.baseline && !native, cfg.reps,
              progress));
        }
      }
    }
  }
  return rows;
}

}  // namespace clq::bench
