#include "bench/bench_moe.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>

#include "host/formats/moe.h"
#include "host/ops/moe/fused_moe.h"
#include "host/synth/synth.h"
#include "runtime/status.h"

namespace clq::bench {

std::vector<Row> bench_moe(Context& c, const MoeBenchConfig& cfg, std::ostream* progress) {
  struct Model {
    const char* name;
    int64_t E, H, I;
    int k;
    MoeWeightKind kind;
    bool grouped;
  };
  // Full sizes, or a quarter of H and I (and an eighth for DeepSeek) on a CPU device.
  std::vector<Model> models = {
      {"mixtral-8x7b", 8, 4096, 14336, 2, MoeWeightKind::kDense, false},
      {"qwen3-30b-a3b", 128, 2048, 768, 8, MoeWeightKind::kDense, false},
      {"deepseek-v3", 256, 7168, 2048, 8, MoeWeightKind::kFp8, true},
  };
  if (cfg.quick)
    models = {{"mixtral-8x7b/4", 8, 1024, 3584, 2, MoeWeightKind::kDense, false},
              {"qwen3-30b-a3b/4", 128, 512, 192, 8, MoeWeightKind::kDense, false},
              {"deepseek-v3/8", 256, 896, 256, 8, MoeWeightKind::kFp8, true}};
  if (!cfg.models.empty()) {
    std::vector<Model> keep;
    for (const std::string& name : cfg.models) {
      auto it = std::find_if(models.begin(), models.end(), [&](const Model& m) { return name == m.name; });
      if (it == models.end()) {
        std::string known;
        for (const Model& m : models) known += (known.empty() ? "" : ", ") + std::string(m.name);
        fail(Status::kInvalidArgument, "moe --models: '" + name + "' is not one of " + known);
      }
      keep.push_back(*it);
    }
    models = keep;
  }
  if (!cfg.experts.empty() && cfg.experts != "int4" && cfg.experts != "int8")
    fail(Status::kInvalidArgument, "moe --experts '" + cfg.experts + "': use int4 or int8");
  if (!cfg.experts.empty())
    for (Model& m : models) m.kind = cfg.experts == "int8" ? MoeWeightKind::kInt8 : MoeWeightKind::kInt4;
  std::vector<int64_t> ts = cfg.ts;
  if (ts.empty()) ts = cfg.quick ? std::vector<int64_t>{1, 16, 64} : std::vector<int64_t>{1, 16, 64, 4096};
  MoeRunOptions opt;
  if (!cfg.variant.empty() && cfg.variant != "decode" && cfg.variant != "general" && cfg.variant != "nv_wgmma")
    fail(Status::kInvalidArgument, "moe --variant '" + cfg.variant + "': use decode, general or nv_wgmma");
  opt.variant = cfg.variant;  // a fused_moe row (host/caps/caps.cpp)
  opt.block_size = cfg.block_size;
  std::vector<Row> rows;
  for (const Model& md : models) {
    MoeSynthSpec s;
    s.kind = md.kind;
    s.E = md.E;
    s.H = md.H;
    s.I = md.I;
    s.bias = md.grouped;
    s.share_expert_weights = true;
    // Integer experts: GPTQ v2 (true zeros), groups of 128 as most GPTQ exports, 64 where H or I is
    // not a multiple of 128 (the quick Qwen3 size, I = 192).
    s.int4_format = W4Format::kGptqV2;
    s.group_size = md.H % 128 == 0 && md.I % 128 == 0 ? 128 : 64;
    MoeSynth synth(s);
    FusedMoe op(c, synth.checkpoint());
    MoeRouting r;
    r.top_k = md.k;
    if (md.grouped) {
      r.kind = MoeRouting::Kind::kGrouped;
      r.n_group = 8;
      r.topk_group = 4;
      r.renormalize = true;
      r.routed_scaling = 2.5f;
    } else {
      r.renormalize = md.E > 8;
    }
    for (int64_t T : ts) {
      auto x = random_activations(T, md.H, DType::kBF16, uint64_t(T));
      cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
      c.write(dx, x.data(), x.size());
      const OpEvents first = op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, opt);
      const std::string ran = first.row->variant;  // the row that ran
      std::vector<int> ids;
      std::vector<float> w;
      op.read_routing(&ids, &w);
      const size_t touched = std::set<int>(ids.begin(), ids.end()).size();
      MoeProblem p;
      p.T = T;
      p.H = md.H;
      p.I = md.I;
      p.top_k = md.k;
      Row row = measure_case(
          c, "moe", std::string(md.name) + " T=" + std::to_string(T), moe_kind_name(md.kind), T, md.H, md.I, p.flops(),
          double(touched) * op.expert_bytes() + 2.0 * double(x.size()),
          [&] { return op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, opt); }, false, cfg.reps, progress);
      const char* kind = md.kind == MoeWeightKind::kFp8    ? "fp8"
                         : md.kind == MoeWeightKind::kInt4 ? "int4"
                         : md.kind == MoeWeightKind::kInt8 ? "int8"
                                                           : "bf16";
      row.variant = std::string(kind) + (ran == "decode" ? " dec" : ran == "general" ? " gen" : " wgmma");
      if (harness_options().replay && c.command_buffers()) {
        // The call has run (warm-up and timing above), so its scratch exists; a path that reads
        // back or writes during the call cannot be recorded, and says so.
        try {
          auto rec = c.record([&] { op.run(dx, DType::kBF16, dy, DType::kBF16, T, r, opt); });
          const int n = std::max(row.reps, 3);
          std::vector<double> dev;
          c.finish();
          const auto t0 = std::chrono::steady_clock::now();
          std::vector<cl::Event> evs;
          for (int i = 0; i < n; ++i) evs.push_back(rec->replay());
          c.finish();
          row.replay_wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
          for (auto& e : evs) dev.push_back(event_ms(e));
          std::sort(dev.begin(), dev.end());
          // PoCL 5 stamps a command buffer's event with start == end: no device time then.
          row.replay_ms = dev[dev.size() / 2] >= 1e-3 ? dev[dev.size() / 2] : 0.0;
        } catch (const Error& e) {
          if (progress) *progress << "  replay of " << row.label << " not recorded: " << e.what() << "\n";
        }
      }
      row.label += " (" + std::to_string(touched) + " experts, " +
                   std::to_string(int64_t(double(T) / (row.ms * 1e-3))) + " tok/s)";
      rows.push_back(row);
    }
  }
  return rows;
}

}  // namespace clq::bench
