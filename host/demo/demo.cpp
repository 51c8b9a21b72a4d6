#include "host/demo/demo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <memory>
#include <random>

#include "host/ops/convert.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/moe/fused_moe.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/ops/quantize/weight_quant.h"
#include "host/ops/w8a8_int8/w8a8_int8_gemm.h"
#include "host/reference/quantize_reference.h"
#include "host/reference/reference.h"
#include "host/caps/report.h"
#include "host/synth/synth.h"
#include "runtime/status.h"

namespace clq {

namespace {
std::string fmt_ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", std::chrono::duration<double, std::milli>(b - a).count());
  return buf;
}

DemoResult check_decode_all(Context& c, NumFormat f) {
  std::vector<uint32_t> codes(size_t(1) << num_format_bits(f));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint32_t(i);
  // The first call builds (or loads) the kernel; the op is timed on the second, the first shown apart.
  auto t0 = std::chrono::steady_clock::now();
  device_decode(c, f, codes);
  auto t1 = std::chrono::steady_clock::now();
  auto dev = device_decode(c, f, codes);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  auto host = host_decode(f, codes);
  size_t bad = 0;
  for (size_t i = 0; i < codes.size(); ++i) bad += dev[i] != host[i];
  return {bad == 0, ms,
          std::to_string(codes.size()) + " codes, " + std::to_string(bad) + " mismatches (wall ms; first call " +
              fmt_ms(t0, t1) + " with the kernel build/load)"};
}

DemoResult check_encode_random(Context& c, NumFormat f, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> bits(1 << 16);
  for (auto& b : bits) b = uint32_t(rng());
  auto t0 = std::chrono::steady_clock::now();
  device_encode(c, f, bits);
  auto t1 = std::chrono::steady_clock::now();
  auto dev = device_encode(c, f, bits);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  auto host = host_encode(f, bits);
  size_t bad = 0;
  for (size_t i = 0; i < bits.size(); ++i) bad += dev[i] != host[i];
  return {bad == 0, ms,
          std::to_string(bits.size()) + " random fp32, " + std::to_string(bad) + " mismatches (wall ms; first call " +
              fmt_ms(t0, t1) + " with the kernel build/load)"};
}

// One integer layer (int4, or int8 with bits = 8) through its op, against the fp64 reference on
// the same quantized weights.
DemoResult check_w4a16(Context& c, uint64_t seed, W4Format fmt, bool act_order, int64_t M, int64_t K, int64_t N,
                       int bits = 4, int group_size = 128) {
  W4SynthSpec spec;
  spec.format = fmt;
  spec.bits = bits;
  spec.K = K;
  spec.N = N;
  spec.group_size = group_size;
  spec.act_order = act_order;
  spec.seed = seed;
  W4Synth synth(spec);
  W4Checkpoint ck = synth.checkpoint();
  const std::unique_ptr<IntLayerGemm> opp = make_int_layer_gemm(c, ck);
  IntLayerGemm& op = *opp;
  auto x = random_activations(M, K, DType::kF16, seed + 1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
  c.write(dx, x.data(), x.size());
  c.fill_u32(dy, 0xFFFFFFFFu, size_t(M * N) * 2);
  // Warm-up keeps the kernel build out of the reported time.
  op.run(dx, DType::kF16, dy, DType::kF16, M);
  c.fill_u32(dy, 0xFFFFFFFFu, size_t(M * N) * 2);
  OpEvents ev = op.run(dx, DType::kF16, dy, DType::kF16, M);
  c.finish();
  std::vector<uint16_t> y(static_cast<size_t>(M * N));
  c.read(dy, y.data(), y.size() * 2);
  auto ref = gemm_reference(x.data(), DType::kF16, M, K, dequantize_w4(ck), N);
  ErrorStats e = compare_output(y.data(), DType::kF16, ref);
  bool pass = e.nan_count == 0 && e.rel_mean() < W4A16Problem::kTolerance;
  char buf[160];
  std::snprintf(buf, sizeof buf, "variant %s, rel mean err %.2e, %zu NaN", ev.row->variant, e.rel_mean(),
                e.nan_count);
  return {pass, ev.ms(), buf};
}

// One W8A8 int8 layer: every output equal to the host twin's (exact int32 sums).
DemoResult check_w8a8(Context& c, uint64_t seed, int64_t M, int64_t K, int64_t N) {
  W4Synth synth(w8a8_synth_spec(N, K, seed));
  W8A8Int8Gemm op(c, repack_w8(synth.checkpoint()));
  auto x = random_activations(M, K, DType::kF32, seed + 1);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 4);
  c.write(dx, x.data(), x.size());
  op.run(dx, DType::kF32, dy, DType::kF32, M);  // warm-up: the kernel builds stay out of the time
  c.fill_u32(dy, 0xFFFFFFFFu, size_t(M * N) * 4);
  OpEvents ev = op.run(dx, DType::kF32, dy, DType::kF32, M);
  c.finish();
  std::vector<float> y(size_t(M * N));
  c.read(dy, y.data(), y.size() * 4);
  const std::vector<float> twin = w8a8_int8_host(op.weights(), quantize_int8_act_host(x.data(), DType::kF32, M, K));
  size_t differ = 0;
  for (size_t i = 0; i < y.size(); ++i) differ += std::memcmp(&y[i], &twin[i], 4) != 0;
  char buf[160];
  std::snprintf(buf, sizeof buf, "variant %s, %zu of %zu outputs differ from the host twin", ev.row->variant, differ,
                y.size());
  return {differ == 0, ev.ms(), buf};
}

// Online weight quantization of one bf16 matrix: codes, scales and zero points equal to the host
// twin's, every method.
DemoResult check_weight_quant(Context& c, uint64_t seed, int64_t N, int64_t K) {
  auto w = random_activations(N, K, DType::kBF16, seed + 7);
  const DenseWeight dw{"demo.weight", DType::kBF16, N, K, w.data()};
  WeightQuantizer op(c, /*poison=*/true);
  double ms = 0.0;
  size_t differ = 0;
  std::string detail;
  for (QuantSpec spec : {QuantSpec{QuantMethod::kInt4, 128, false}, QuantSpec{QuantMethod::kInt8, -1, true},
                         QuantSpec{QuantMethod::kFp8Block, 128, true}}) {
    QuantizedWeight dev;
    ms += op.run(dw, spec, &dev).ms();
    const QuantizedWeight host = quantize_weight_host(dw, spec);
    differ += dev.codes != host.codes || dev.scales16 != host.scales16 || dev.zeros != host.zeros ||
              std::memcmp(dev.scales32.data(), host.scales32.data(), host.scales32.size() * 4) != 0;
    char part[96];
    std::snprintf(part, sizeof part, "%s%s rel err %.2e", detail.empty() ? "" : ", ", quant_spec_text(spec).c_str(),
                  quant_error(dw, host).rel_fro());
    detail += part;
  }
  return {differ == 0, ms, (differ ? std::to_string(differ) + " method(s) differ from the host twin; " : "bit-identical: ") + detail};
}

// One FP8 layer through the op in `act` mode, against the fp64 reference.
DemoResult check_fp8(Context& c, uint64_t seed, bool block, Fp8Act act, int64_t M, int64_t K, int64_t N) {
  Fp8SynthSpec spec;
  spec.N = N;
  spec.K = K;
  spec.block = block;
  spec.with_input_scale = act == Fp8Act::kTensorStatic;
  spec.seed = seed;
  Fp8Synth synth(spec);
  Fp8Checkpoint ck = synth.checkpoint();
  Fp8Gemm op(c, repack_fp8(ck));
  auto x = random_activations(M, K, DType::kBF16, seed + 3);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(size_t(M * N) * 2);
  c.write(dx, x.data(), x.size());
  Fp8RunOptions opt;
  opt.act = act;
  op.run(dx, DType::kBF16, dy, DType::kBF16, M, opt);  // warm-up: builds stay out of the time
  c.fill_u32(dy, 0xFFFFFFFFu, size_t(M * N) * 2);
  OpEvents ev = op.run(dx, DType::kBF16, dy, DType::kBF16, M, opt);
  c.finish();
  std::vector<uint16_t> y(static_cast<size_t>(M * N));
  c.read(dy, y.data(), y.size() * 2);
  ErrorStats e = compare_output(y.data(), DType::kBF16, fp8_gemm_reference(ck, x.data(), DType::kBF16, M, act));
  bool pass = e.nan_count == 0 && e.rel_mean() < Fp8Problem::kTolerance;
  char buf[160];
  std::snprintf(buf, sizeof buf, "variant %s, rel mean err %.2e, %zu NaN", ev.row->variant, e.rel_mean(),
                e.nan_count);
  return {pass, ev.ms(), buf};
}

// One fused MoE layer (router weight to output) against the fp64 reference, with the routing the
// device chose checked against the host twin first.
DemoResult check_moe(Context& c, uint64_t seed, MoeWeightKind kind, bool grouped) {
  MoeSynthSpec spec;
  spec.kind = kind;
  spec.E = grouped ? 16 : 8;
  spec.H = 256;
  spec.I = 128;
  spec.bias = grouped;
  spec.seed = seed;
  MoeSynth synth(spec);
  const MoeCheckpoint& m = synth.checkpoint();
  FusedMoe op(c, m);
  const int64_t T = 5;
  MoeRouting r;
  r.top_k = grouped ? 6 : 2;
  if (grouped) {
    r.kind = MoeRouting::Kind::kGrouped;
    r.n_group = 4;
    r.topk_group = 2;
    r.renormalize = true;
    r.routed_scaling = 2.5f;
  }
  auto x = random_activations(T, m.H, DType::kBF16, seed + 5);
  cl::Buffer dx = c.alloc(x.size()), dy = c.alloc(x.size());
  c.write(dx, x.data(), x.size());
  op.run(dx, DType::kBF16, dy, DType::kBF16, T, r);
  c.fill_u32(dy, 0xFFFFFFFFu, x.size());
  OpEvents ev = op.run(dx, DType::kBF16, dy, DType::kBF16, T, r);
  c.finish();
  std::vector<float> logits, w, hw;
  std::vector<int> ids, hids;
  op.read_logits(&logits);
  op.read_routing(&ids, &w);
  moe_route_host(logits, T, m.E, r, m.bias ? reinterpret_cast<const float*>(m.bias->data) : nullptr, &hids, &hw);
  std::vector<uint16_t> y(size_t(T * m.H));
  c.read(dy, y.data(), y.size() * 2);
  auto ref = moe_reference(m, x.data(), DType::kBF16, T, hids, hw, r.top_k);
  ErrorStats e = compare_output(y.data(), DType::kBF16, ref);
  bool pass = ids == hids && MoeProblem::within_tolerance(e);
  char buf[200];
  std::snprintf(buf, sizeof buf, "variant %s, routing %s, rel mean err %.2e, max abs err %.2e, %zu NaN",
                ev.row->variant, ids == hids ? "matches" : "DIFFERS", e.rel_mean(), e.max_abs_err, e.nan_count);
  return {pass, ev.ms(), buf};
}

std::vector<DemoCheck> make_checks();
}  // namespace

namespace {
std::vector<DemoCheck> make_checks() {
  std::vector<DemoCheck> v;
  for (NumFormat f : {NumFormat::kFp16, NumFormat::kBf16, NumFormat::kE4m3, NumFormat::kE5m2}) {
    v.push_back({std::string("decode ") + num_format_name(f) + " (all codes)",
                 [f](Context& c, uint64_t) { return check_decode_all(c, f); }});
    v.push_back({std::string("encode ") + num_format_name(f) + " (random fp32)",
                 [f](Context& c, uint64_t s) { return check_encode_random(c, f, s); }});
  }
  v.push_back({"w4a16 gptq act-order M=1 K=1024 N=512 g128",
               [](Context& c, uint64_t s) { return check_w4a16(c, s, W4Format::kGptq, true, 1, 1024, 512); }});
  v.push_back({"w4a16 awq M=5 K=1024 N=512 g128",
               [](Context& c, uint64_t s) { return check_w4a16(c, s, W4Format::kAwq, false, 5, 1024, 512); }});
  v.push_back({"w4a16 gptq_v2 M=96 K=512 N=256 g128",
               [](Context& c, uint64_t s) { return check_w4a16(c, s, W4Format::kGptqV2, false, 96, 512, 256); }});
  v.push_back({"w8a16 int8 gptq act M=3 K=1024 N=512 g128",
               [](Context& c, uint64_t s) { return check_w4a16(c, s, W4Format::kGptq, true, 3, 1024, 512, 8); }});
  v.push_back({"w8a8 int8 per-token M=9 K=1024 N=256",
               [](Context& c, uint64_t s) { return check_w8a8(c, s, 9, 1024, 256); }});
  v.push_back({"w8a16 int8 ct per-channel M=80 K=512 N=256",
               [](Context& c, uint64_t s) {
                 return check_w4a16(c, s, W4Format::kCompressedTensors, false, 80, 512, 256, 8, -1);
               }});
  v.push_back({"fp8 block w8a8 M=1 K=3884 N=576",
               [](Context& c, uint64_t s) { return check_fp8(c, s, true, Fp8Act::kBlockDynamic, 1, 3884, 576); }});
  v.push_back({"fp8 block w8a8 M=83 K=1024 N=256",
               [](Context& c, uint64_t s) { return check_fp8(c, s, true, Fp8Act::kBlockDynamic, 83, 1024, 256); }});
  v.push_back({"fp8 per-tensor static M=7 K=512 N=512",
               [](Context& c, uint64_t s) { return check_fp8(c, s, false, Fp8Act::kTensorStatic, 7, 512, 512); }});
  v.push_back({"fp8 weight-only w8a16 M=3 K=1024 N=384",
               [](Context& c, uint64_t s) { return check_fp8(c, s, true, Fp8Act::kNone, 3, 1024, 384); }});
  v.push_back({"weight quant int4/int8/fp8-block N=264 K=1024",
               [](Context& c, uint64_t s) { return check_weight_quant(c, s, 264, 1024); }});
  v.push_back({"moe bf16 experts E=8 top-2 softmax T=5",
               [](Context& c, uint64_t s) { return check_moe(c, s, MoeWeightKind::kDense, false); }});
  v.push_back({"moe int4 experts E=8 top-2 softmax T=5",
               [](Context& c, uint64_t s) { return check_moe(c, s, MoeWeightKind::kInt4, false); }});
  v.push_back({"moe fp8 experts E=16 top-6 grouped T=5",
               [](Context& c, uint64_t s) { return check_moe(c, s, MoeWeightKind::kFp8, true); }});
  return v;
}
}  // namespace

const std::vector<DemoCheck>& demo_checks() {
  static const std::vector<DemoCheck> checks = make_checks();
  return checks;
}

int run_demo(Context& c, std::ostream& out, uint64_t seed) {
  print_caps(out, c);
  out << "\nrunning every op once against its host reference (seed " << seed << "):\n";
  int failures = 0;
  for (auto& chk : demo_checks()) {
    DemoResult r;
    try {
      r = chk.run(c, seed);
    } catch (const Error& e) {
      r.pass = false;
      r.detail = std::string("error: ") + e.what();
    }
    failures += !r.pass;
    out << "  " << (r.pass ? "PASS " : "FAIL ") << std::left << std::setw(44) << chk.name;
    // rusticl's event timestamps read zero: say so rather than print a time nothing took.
    if (r.device_ms > 1e-4)
      out << std::right << std::setw(10) << std::fixed << std::setprecision(3) << r.device_ms << " ms";
    else if (r.device_ms >= 0)
      out << std::right << std::setw(13) << "(no ev time)";
    out << "  " << r.detail << "\n";
  }
  out << (failures ? "demo: " + std::to_string(failures) + " check(s) FAILED\n" : "demo: all checks passed\n");
  return failures;
}

}  // namespace clq
