// The C API (include/clquant/clquant.h) over the C++ classes. Every entry point runs inside
// guard(): a clq::Error becomes its status and this thread's last-error message, anything else
// becomes CLQ_ERROR_INTERNAL; no exception crosses into C.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "clquant/clquant.h"
#include "host/formats/loader.h"
#include "host/model/inspect.h"
#include "host/model/quantize.h"
#include "host/model/report_json.h"
#include "host/model/verify.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/ops/gguf/gguf_gemm.h"
#include "host/ops/moe/moe_block.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/ops/w8a16_int8/w8a16_int8_gemm.h"
#include "host/caps/report.h"
#include "host/version.h"
#include "runtime/context.h"
#include "runtime/status.h"

namespace clq_capi {
// One opened device and the lock its handles share: a Context (its program cache, its queue's
// scratch) is not safe for concurrent use, so calls on the layers of one context take turns.
struct Device {
  std::shared_ptr<clq::Context> ctx;
  std::mutex mu;
};
}  // namespace clq_capi

struct clq_context {
  std::shared_ptr<clq_capi::Device> dev;
};

struct clq_linear {
  std::shared_ptr<clq_capi::Device> dev;  // the ops hold a Context&: keep it alive
  clq::LinearLayer layer;
  std::string description, last_variant;
  std::unique_ptr<clq::IntLayerGemm> w4;  // int4 or int8 weight-only
  std::unique_ptr<clq::Fp8Gemm> fp8;
  std::unique_ptr<clq::GgufGemm> gguf;
  std::unique_ptr<clq::OnlineQuantLayer> quantized;  // clq_linear_load_quantized: `layer` views its tensors
  cl::Buffer dx, dy;  // staging for the host-array entry points, grown on demand
  size_t dx_bytes = 0, dy_bytes = 0;
};

// A clq_inspect or clq_verify result: the rows the accessors read, and the JSON kept as a string
// so the pointer clq_report_json returns lives as long as the handle.
struct clq_report {
  struct Row {
    std::string prefix, message;
    bool ok = false;
    double rel_err = 0;
  };
  std::vector<Row> rows;
  size_t failed = 0;
  double worst_rel = 0;
  std::string worst_layer, json;
};

struct clq_moe {
  std::shared_ptr<clq_capi::Device> dev;
  clq::MoeLayer layer;
  std::unique_ptr<clq::MoeBlock> op;  // routed experts, and the shared ones when the checkpoint has them
  cl::Buffer dx, dy;
  size_t dx_bytes = 0, dy_bytes = 0;
};

namespace {

thread_local std::string g_last_error;

template <typename F>
clq_status guard(F&& f) {
  try {
    f();
    return CLQ_SUCCESS;
  } catch (const clq::Error& e) {
    g_last_error = e.what();
    return static_cast<int>(e.status());
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
  } catch (...) {
    g_last_error = "internal error: unknown exception";
  }
  return CLQ_ERROR_INTERNAL;
}

void need(const void* p, const char* what) {
  if (!p) clq::fail(clq::Status::kInvalidArgument, std::string(what) + " is NULL");
}

clq::DType dtype_of(clq_dtype t, const char* what) {
  switch (t) {
    case CLQ_F32:
      return clq::DType::kF32;
    case CLQ_F16:
      return clq::DType::kF16;
    case CLQ_BF16:
      return clq::DType::kBF16;
  }
  clq::fail(clq::Status::kInvalidArgument,
            std::string(what) + " = " + std::to_string(int(t)) + " is not CLQ_F32, CLQ_F16 or CLQ_BF16");
}

void copy_out(const std::string& s, char* buf, size_t size, size_t* needed) {
  if (needed) *needed = s.size();
  if (size == 0 && !buf) return;
  need(buf, "buf");
  if (size < s.size() + 1)
    clq::fail(clq::Status::kInvalidArgument,
              "buffer of " + std::to_string(size) + " bytes is too small: " + std::to_string(s.size() + 1) + " needed");
  std::memcpy(buf, s.c_str(), s.size() + 1);
}

clq::LoadOptions load_options(const char* format, int group_size) {
  clq::LoadOptions o;
  o.format = format ? format : "";
  o.group_size = group_size;
  o.format_option = "the format argument";
  o.prefix_option = "the prefix";
  return o;
}

// A caller's cl_mem: on our context, and its size (checked against the op's needs).
cl::Buffer wrap(clq::Context& c, clq_cl_mem m, const char* what, size_t* bytes) {
  need(m, what);
  cl_context owner = nullptr;
  clq::check_cl(clGetMemObjectInfo(m, CL_MEM_CONTEXT, sizeof(owner), &owner, nullptr),
                std::string("clGetMemObjectInfo(") + what + ")");
  if (owner != c.cl_context()())
    clq::fail(clq::Status::kInvalidArgument,
              std::string(what) + " belongs to another OpenCL context than the layer's (clq_context_cl_context)");
  clq::check_cl(clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof(*bytes), bytes, nullptr),
                std::string("clGetMemObjectInfo(") + what + ")");
  return cl::Buffer(m, /*retainObject=*/true);
}

// Rows x cols before any size is computed from them: a huge count must be an error, not a wrap.
void check_rows(int64_t rows, int64_t cols, const char* what) {
  if (rows < 1)
    clq::fail(clq::Status::kInvalidShape, std::string(what) + " = " + std::to_string(rows) + " must be >= 1");
  if (double(rows) * double(cols) >= 2147483647.0)
    clq::fail(clq::Status::kInvalidShape, std::string(what) + " = " + std::to_string(rows) + " with " +
                                              std::to_string(cols) + " columns exceeds 32-bit element indices");
}

void stage(clq::Context& c, cl::Buffer& b, size_t& have, size_t need_bytes) {
  if (need_bytes <= have) return;
  b = c.alloc(need_bytes);
  have = need_bytes;
}

void linear_enqueue(clq_linear& l, const cl::Buffer& x, size_t xb, clq::DType xt, const cl::Buffer& y, size_t yb,
                    clq::DType yt, int64_t M) {
  if (l.w4) {
    l.w4->can_implement(M, xt, yt, xb, yb);
    const clq::VariantRow& row = l.w4->choose(M, "");
    l.w4->run(x, xt, y, yt, M);
    l.last_variant = row.variant;
  } else if (l.gguf) {
    l.gguf->can_implement(M, xt, yt, xb, yb);
    const clq::VariantRow& row = l.gguf->choose(M, {});
    l.gguf->run(x, xt, y, yt, M);
    l.last_variant = row.variant;
  } else {
    const clq::Fp8Act act = l.fp8->default_act();
    l.fp8->can_implement(M, xt, yt, xb, yb, act);
    const clq::VariantRow& row = l.fp8->choose(M, act, "");
    l.fp8->run(x, xt, y, yt, M);
    l.last_variant = row.variant;
  }
}

clq::MoeRouting routing_of(const clq_moe_routing* r) {
  need(r, "routing");
  clq::MoeRouting m;
  m.top_k = r->top_k;
  m.renormalize = r->renormalize != 0;
  m.kind = r->grouped ? clq::MoeRouting::Kind::kGrouped : clq::MoeRouting::Kind::kSoftmax;
  m.n_group = r->n_group;
  m.topk_group = r->topk_group;
  m.routed_scaling = r->routed_scaling;
  m.softmax_scores = r->softmax_scores != 0;
  return m;
}

clq_report* report_of(const clq::CheckpointInventory& inv, const std::string& device) {
  auto r = std::make_unique<clq_report>();
  for (const clq::LayerInfo& l : inv.layers) {
    clq_report::Row row;
    row.prefix = l.prefix;
    row.ok = l.error.empty();
    if (!row.ok) row.message = std::string("[") + clq::status_name(l.status) + "] " + l.error;
    r->failed += !row.ok;
    r->rows.push_back(std::move(row));
  }
  r->json = clq::inventory_json(inv, device).dump(2);
  return r.release();
}

clq_report* report_of(const clq::VerifyReport& rep, const std::string& device) {
  auto r = std::make_unique<clq_report>();
  for (const clq::LayerCheck& c : rep.layers) {
    clq_report::Row row;
    row.prefix = c.layer.prefix;
    row.ok = c.ok;
    row.message = c.error;
    if (c.error.empty()) row.rel_err = c.err.rel_mean();
    r->rows.push_back(std::move(row));
  }
  r->failed = rep.failed;
  r->worst_rel = rep.worst_rel;
  r->worst_layer = rep.worst_layer;
  r->json = clq::verify_report_json(rep, device).dump(2);
  return r.release();
}

}  // namespace

extern "C" {

const char* clq_version(void) {
  return clq::version();
}
const char* clq_git_revision(void) {
  return clq::git_revision();
}
const char* clq_last_error(void) {
  return g_last_error.c_str();
}

const char* clq_status_name(clq_status s) {
  switch (s) {
    case CLQ_SUCCESS:
      return "CLQ_SUCCESS";
    case CLQ_ERROR_INVALID_ARGUMENT:
      return "CLQ_ERROR_INVALID_ARGUMENT";
    case CLQ_ERROR_INVALID_SHAPE:
      return "CLQ_ERROR_INVALID_SHAPE";
    case CLQ_ERROR_NOT_SUPPORTED:
      return "CLQ_ERROR_NOT_SUPPORTED";
    case CLQ_ERROR_DEVICE_NOT_FOUND:
      return "CLQ_ERROR_DEVICE_NOT_FOUND";
    case CLQ_ERROR_BUILD_FAILED:
      return "CLQ_ERROR_BUILD_FAILED";
    case CLQ_ERROR_IO:
      return "CLQ_ERROR_IO";
    case CLQ_ERROR_FORMAT:
      return "CLQ_ERROR_FORMAT";
    case CLQ_ERROR_CACHE:
      return "CLQ_ERROR_CACHE";
    case CLQ_ERROR_VERIFICATION_FAILED:
      return "CLQ_ERROR_VERIFICATION_FAILED";
    case CLQ_ERROR_INTERNAL:
      return "CLQ_ERROR_INTERNAL";
  }
  // OpenCL codes: names built once per code and kept, so the pointer stays valid.
  static std::mutex mu;
  static std::map<int, std::string> names;
  std::lock_guard<std::mutex> lock(mu);
  auto it = names.find(s);
  if (it == names.end()) it = names.emplace(s, clq::cl_error_name(s)).first;
  return it->second.c_str();
}

clq_status clq_devices_json(char* buf, size_t size, size_t* needed) {
  return guard([&] { copy_out(clq::devices_json(clq::list_devices()).dump(2), buf, size, needed); });
}

clq_status clq_context_open(const char* selector, clq_context** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    auto c = std::make_unique<clq_context>();
    c->dev = std::make_shared<clq_capi::Device>();
    c->dev->ctx = clq::Context::open(selector ? selector : "");
    *out = c.release();
  });
}

void clq_context_release(clq_context* ctx) {
  delete ctx;
}

const char* clq_context_device_name(const clq_context* ctx) {
  return ctx ? ctx->dev->ctx->features().device_name.c_str() : "";
}

clq_status clq_context_capabilities_json(clq_context* ctx, char* buf, size_t size, size_t* needed) {
  return guard([&] {
    need(ctx, "ctx");
    std::string s;
    {
      std::lock_guard<std::mutex> lock(ctx->dev->mu);
      s = clq::caps_json(*ctx->dev->ctx).dump(2);
    }
    copy_out(s, buf, size, needed);
  });
}

clq_cl_context clq_context_cl_context(clq_context* ctx) {
  return ctx ? ctx->dev->ctx->cl_context()() : nullptr;
}

clq_cl_command_queue clq_context_cl_queue(clq_context* ctx) {
  return ctx ? ctx->dev->ctx->queue()() : nullptr;
}

clq_status clq_context_finish(clq_context* ctx) {
  return guard([&] {
    need(ctx, "ctx");
    std::lock_guard<std::mutex> lock(ctx->dev->mu);
    ctx->dev->ctx->finish();
  });
}

namespace {
// The ops of a loaded or quantized layer, built under the context's lock.
void build_linear_ops(clq_linear* l) {
  std::lock_guard<std::mutex> lock(l->dev->mu);
  if (l->layer.is_int4()) {
    if (l->layer.is_w8a8())
      clq::fail(clq::Status::kNotSupported, "'" + l->layer.prefix + "' is a W8A8 int8 layer (activations quantized "
                                            "per token): the C API does not run it yet (clquant gemm does)");
    l->w4 = clq::make_int_layer_gemm(*l->dev->ctx, l->layer.w4().ck);
  } else if (l->layer.is_gguf()) {
    l->gguf = std::make_unique<clq::GgufGemm>(*l->dev->ctx, l->layer.gguf());
  } else {
    l->fp8 = std::make_unique<clq::Fp8Gemm>(*l->dev->ctx, clq::repack_fp8(l->layer.fp8().ck));
  }
}
}  // namespace

clq_status clq_linear_load(clq_context* ctx, const char* path, const char* prefix, const char* format, int group_size,
                           clq_linear** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(ctx, "ctx");
    need(path, "path");
    need(prefix, "prefix");
    auto l = std::make_unique<clq_linear>();
    l->dev = ctx->dev;
    l->layer = clq::load_linear(path, prefix, load_options(format, group_size));
    l->description = l->layer.describe();
    build_linear_ops(l.get());
    *out = l.release();
  });
}


clq_status clq_linear_load_quantized(clq_context* ctx, const char* path, const char* prefix, const char* method,
                                     int group_size, int asym, clq_linear** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(ctx, "ctx");
    need(path, "path");
    need(prefix, "prefix");
    need(method, "method");
    const clq::QuantSpec spec = clq::quant_spec_from(method, group_size, asym != 0);
    auto ck = std::make_shared<const clq::Checkpoint>(clq::Checkpoint::open(path));
    auto l = std::make_unique<clq_linear>();
    l->dev = ctx->dev;
    {
      std::lock_guard<std::mutex> lock(l->dev->mu);
      l->quantized = std::make_unique<clq::OnlineQuantLayer>(clq::quantize_linear(*l->dev->ctx, ck, prefix, spec));
    }
    l->layer = l->quantized->layer;
    l->description = l->layer.describe();
    build_linear_ops(l.get());
    *out = l.release();
  });
}

clq_status clq_linear_quant_error(const clq_linear* layer, double* rel_fro, double* max_abs) {
  return guard([&] {
    need(layer, "layer");
    if (!layer->quantized)
      clq::fail(clq::Status::kInvalidArgument, "layer '" + layer->layer.prefix +
                                                   "' was not quantized at load (clq_linear_load_quantized)");
    if (rel_fro) *rel_fro = layer->quantized->error.rel_fro();
    if (max_abs) *max_abs = layer->quantized->error.max_abs;
  });
}

void clq_quantize_options_init(clq_quantize_options* o) {
  if (!o) return;
  o->method = "int4";
  o->group_size = 0;
  o->asym = 0;
  o->layers = nullptr;
  o->force = 0;
  o->max_shard_size = clq::QuantizeCheckpointOptions::kDefaultMaxShardSize;
}

clq_status clq_quantize(clq_context* ctx, const char* input, const char* output, const clq_quantize_options* options,
                        char* buf, size_t size, size_t* needed) {
  return guard([&] {
    need(ctx, "ctx");
    need(input, "input");
    need(output, "output");
    clq_quantize_options defaults;
    clq_quantize_options_init(&defaults);
    const clq_quantize_options& q = options ? *options : defaults;
    need(q.method, "options->method");
    clq::QuantizeCheckpointOptions o;
    o.input = input;
    o.output = output;
    o.spec = clq::quant_spec_from(q.method, q.group_size, q.asym != 0);
    o.layers = q.layers ? q.layers : "";
    o.force = q.force != 0;
    o.max_shard_size = q.max_shard_size;
    std::string report;
    {
      std::lock_guard<std::mutex> lock(ctx->dev->mu);
      report = clq::quantize_report_json(clq::quantize_checkpoint(*ctx->dev->ctx, o), o.spec);
    }
    copy_out(report, buf, size, needed);
  });
}

clq_status clq_quantize_checkpoint(clq_context* ctx, const char* input, const char* output, const char* method,
                                   int group_size, int asym, const char* layers, int force, char* buf, size_t size,
                                   size_t* needed) {
  clq_quantize_options o;
  clq_quantize_options_init(&o);
  o.method = method;
  o.group_size = group_size;
  o.asym = asym;
  o.layers = layers;
  o.force = force;
  if (!method)  // the same refusals in the same order as before clq_quantize existed
    return guard([&] {
      need(ctx, "ctx");
      need(input, "input");
      need(output, "output");
      need(method, "method");
    });
  return clq_quantize(ctx, input, output, &o, buf, size, needed);
}

void clq_linear_release(clq_linear* layer) {
  delete layer;
}

clq_status clq_linear_shape(const clq_linear* layer, int64_t* K, int64_t* N) {
  return guard([&] {
    need(layer, "layer");
    if (K) *K = layer->layer.K();
    if (N) *N = layer->layer.N();
  });
}

const char* clq_linear_describe(const clq_linear* layer) {
  return layer ? layer->description.c_str() : "";
}

const char* clq_linear_last_variant(const clq_linear* layer) {
  return layer ? layer->last_variant.c_str() : "";
}

clq_status clq_linear_run_host(clq_linear* layer, const void* x, clq_dtype xt, void* y, clq_dtype yt, int64_t M) {
  return guard([&] {
    need(layer, "layer");
    need(x, "x");
    need(y, "y");
    const clq::DType dxt = dtype_of(xt, "xt"), dyt = dtype_of(yt, "yt");
    check_rows(M, std::max(layer->layer.K(), layer->layer.N()), "M");
    std::lock_guard<std::mutex> lock(layer->dev->mu);
    clq::Context& c = *layer->dev->ctx;
    const size_t xb = size_t(M * layer->layer.K()) * clq::dtype_size(dxt);
    const size_t yb = size_t(M * layer->layer.N()) * clq::dtype_size(dyt);
    stage(c, layer->dx, layer->dx_bytes, xb);
    stage(c, layer->dy, layer->dy_bytes, yb);
    c.write(layer->dx, x, xb);
    linear_enqueue(*layer, layer->dx, xb, dxt, layer->dy, yb, dyt, M);
    c.read(layer->dy, y, yb);  // blocking read on the in-order queue: the run has finished
  });
}

clq_status clq_linear_run_cl(clq_linear* layer, clq_cl_mem x, clq_dtype xt, clq_cl_mem y, clq_dtype yt, int64_t M) {
  return guard([&] {
    need(layer, "layer");
    const clq::DType dxt = dtype_of(xt, "xt"), dyt = dtype_of(yt, "yt");
    std::lock_guard<std::mutex> lock(layer->dev->mu);
    size_t xb = 0, yb = 0;
    cl::Buffer bx = wrap(*layer->dev->ctx, x, "x", &xb), by = wrap(*layer->dev->ctx, y, "y", &yb);
    linear_enqueue(*layer, bx, xb, dxt, by, yb, dyt, M);
  });
}

void clq_moe_routing_init(clq_moe_routing* r) {
  if (!r) return;
  r->top_k = 2;
  r->renormalize = 0;
  r->grouped = 0;
  r->n_group = 1;
  r->topk_group = 1;
  r->routed_scaling = 1.0f;
  r->softmax_scores = 0;
}

clq_status clq_moe_load(clq_context* ctx, const char* path, const char* prefix, const char* format, int group_size,
                        clq_moe** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(ctx, "ctx");
    need(path, "path");
    need(prefix, "prefix");
    auto m = std::make_unique<clq_moe>();
    m->dev = ctx->dev;
    m->layer = clq::load_moe(path, prefix, load_options(format, group_size));
    std::lock_guard<std::mutex> lock(m->dev->mu);
    m->op = std::make_unique<clq::MoeBlock>(*m->dev->ctx, m->layer.moe);
    *out = m.release();
  });
}

void clq_moe_release(clq_moe* layer) {
  delete layer;
}

clq_status clq_moe_shape(const clq_moe* layer, int64_t* E, int64_t* H, int64_t* I) {
  return guard([&] {
    need(layer, "layer");
    if (E) *E = layer->layer.moe.E;
    if (H) *H = layer->layer.moe.H;
    if (I) *I = layer->layer.moe.I;
  });
}

clq_status clq_moe_shared_experts(const clq_moe* layer, int64_t* shared_I, int* gated) {
  return guard([&] {
    need(layer, "layer");
    if (shared_I) *shared_I = layer->op->shared_I();
    if (gated) *gated = layer->op->shared_gated() ? 1 : 0;
  });
}

clq_status clq_moe_config_routing(const clq_moe* layer, clq_moe_routing* routing, int* found) {
  return guard([&] {
    need(layer, "layer");
    need(routing, "routing");
    need(found, "found");
    clq_moe_routing_init(routing);
    *found = layer->layer.config ? 1 : 0;
    if (!layer->layer.config) return;
    const clq::MoeRouting r = clq::moe_routing_from_config(*layer->layer.config);
    routing->top_k = r.top_k;
    routing->renormalize = r.renormalize ? 1 : 0;
    routing->grouped = r.kind == clq::MoeRouting::Kind::kGrouped ? 1 : 0;
    routing->n_group = r.n_group;
    routing->topk_group = r.topk_group;
    routing->routed_scaling = r.routed_scaling;
    routing->softmax_scores = r.softmax_scores ? 1 : 0;
  });
}

clq_status clq_moe_run_host(clq_moe* layer, const void* x, clq_dtype xt, void* y, clq_dtype yt, int64_t T,
                            const clq_moe_routing* routing) {
  return guard([&] {
    need(layer, "layer");
    need(x, "x");
    need(y, "y");
    const clq::DType dxt = dtype_of(xt, "xt"), dyt = dtype_of(yt, "yt");
    const clq::MoeRouting r = routing_of(routing);
    check_rows(T, layer->layer.moe.H, "T");
    std::lock_guard<std::mutex> lock(layer->dev->mu);
    clq::Context& c = *layer->dev->ctx;
    const int64_t H = layer->layer.moe.H;
    const size_t xb = size_t(T * H) * clq::dtype_size(dxt), yb = size_t(T * H) * clq::dtype_size(dyt);
    layer->op->can_implement(T, dxt, dyt, xb, yb, r, {});
    stage(c, layer->dx, layer->dx_bytes, xb);
    stage(c, layer->dy, layer->dy_bytes, yb);
    c.write(layer->dx, x, xb);
    layer->op->run(layer->dx, dxt, layer->dy, dyt, T, r);
    c.read(layer->dy, y, yb);
  });
}

clq_status clq_moe_run_cl(clq_moe* layer, clq_cl_mem x, clq_dtype xt, clq_cl_mem y, clq_dtype yt, int64_t T,
                          const clq_moe_routing* routing) {
  return guard([&] {
    need(layer, "layer");
    const clq::DType dxt = dtype_of(xt, "xt"), dyt = dtype_of(yt, "yt");
    const clq::MoeRouting r = routing_of(routing);
    std::lock_guard<std::mutex> lock(layer->dev->mu);
    size_t xb = 0, yb = 0;
    cl::Buffer bx = wrap(*layer->dev->ctx, x, "x", &xb), by = wrap(*layer->dev->ctx, y, "y", &yb);
    layer->op->can_implement(T, dxt, dyt, xb, yb, r, {});
    layer->op->run(bx, dxt, by, dyt, T, r);
  });
}

clq_status clq_inspect(clq_context* ctx, const char* path, const char* format, int group_size, clq_report** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    // Loading the layers touches no device; the features only pick the variants.
    const clq::DeviceFeatures* f = ctx ? &ctx->dev->ctx->features() : nullptr;
    const clq::CheckpointInventory inv = clq::inspect_checkpoint(path, f, load_options(format, group_size));
    *out = report_of(inv, f ? f->device_name : "");
  });
}

void clq_verify_options_init(clq_verify_options* o) {
  if (!o) return;
  o->layers = nullptr;
  o->tokens = 5;
  o->seed = 1;
  o->format = nullptr;
  o->group_size = 0;
  o->progress = nullptr;
  o->progress_user = nullptr;
}

clq_status clq_verify(clq_context* ctx, const char* path, const clq_verify_options* options, clq_report** out) {
  size_t failed = 0;
  std::string names;
  const clq_status st = guard([&] {
    need(out, "out");
    *out = nullptr;
    need(ctx, "ctx");
    need(path, "path");
    clq_verify_options defaults;
    clq_verify_options_init(&defaults);
    const clq_verify_options& o = options ? *options : defaults;
    clq::VerifyOptions vo;
    vo.layers = o.layers ? o.layers : "";
    vo.tokens = o.tokens;
    vo.seed = o.seed;
    vo.load = load_options(o.format, o.group_size);
    if (o.progress) {
      const clq_verify_progress_fn fn = o.progress;
      void* user = o.progress_user;
      vo.progress = [fn, user](size_t i, size_t n, const clq::LayerInfo& l, const clq::LayerCheck* done) {
        fn(user, i, n, l.prefix.c_str(), done ? 1 : 0, done && done->ok ? 1 : 0);
      };
    }
    std::lock_guard<std::mutex> lock(ctx->dev->mu);
    const clq::VerifyReport rep = clq::verify_checkpoint(*ctx->dev->ctx, path, vo);
    *out = report_of(rep, ctx->dev->ctx->features().device_name);
    failed = rep.failed;
    for (const clq::LayerCheck& c : rep.layers)
      if (!c.ok) names += (names.empty() ? "" : ", ") + c.layer.prefix;
  });
  if (st != CLQ_SUCCESS || failed == 0) return st;
  g_last_error = std::to_string(failed) + " of " + std::to_string((*out)->rows.size()) + " layers failed: " + names;
  return CLQ_ERROR_VERIFICATION_FAILED;
}

const char* clq_report_json(const clq_report* report) {
  return report ? report->json.c_str() : "";
}

clq_status clq_report_summary(const clq_report* report, size_t* layers, size_t* failed, double* worst_rel_err,
                              const char** worst_layer) {
  return guard([&] {
    need(report, "report");
    if (layers) *layers = report->rows.size();
    if (failed) *failed = report->failed;
    if (worst_rel_err) *worst_rel_err = report->worst_rel;
    if (worst_layer) *worst_layer = report->worst_layer.c_str();
  });
}

clq_status clq_report_layer(const clq_report* report, size_t index, const char** prefix, int* ok, double* rel_err,
                            const char** message) {
  return guard([&] {
    need(report, "report");
    if (index >= report->rows.size())
      clq::fail(clq::Status::kInvalidArgument, "layer index " + std::to_string(index) + " is out of range: the report has " +
                                                   std::to_string(report->rows.size()) + " layers");
    const clq_report::Row& r = report->rows[index];
    if (prefix) *prefix = r.prefix.c_str();
    if (ok) *ok = r.ok ? 1 : 0;
    if (rel_err) *rel_err = r.rel_err;
    if (message) *message = r.message.c_str();
  });
}

void clq_report_release(clq_report* report) {
  delete report;
}

}  // extern "C"
