// clquant._clquant: the native half of the Python package. Thin: the C++ classes with their
// checks; dtype handling, device caching and the public names live in python/clquant/__init__.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

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

namespace nb = nanobind;
// Inputs may be read-only (np.frombuffer, memory maps); outputs are written.
using InArray = nb::ndarray<nb::ro, nb::device::cpu, nb::c_contig>;
using OutArray = nb::ndarray<nb::device::cpu, nb::c_contig>;

namespace {

clq::DType dtype_of(int code) {
  switch (code) {
    case 0:
      return clq::DType::kF32;
    case 1:
      return clq::DType::kF16;
    case 2:
      return clq::DType::kBF16;
  }
  clq::fail(clq::Status::kInvalidArgument, "dtype code " + std::to_string(code) + " is not 0 (f32), 1 (f16), 2 (bf16)");
}

template <typename A>
size_t nbytes(const A& a) {
  return a.size() * a.itemsize();
}

// The host array must hold exactly rows x cols elements of `t`: checked here, before any copy.
template <typename A>
void check_array(const A& a, const char* what, int64_t rows, int64_t cols, clq::DType t) {
  const size_t want = size_t(rows * cols) * clq::dtype_size(t);
  if (nbytes(a) != want)
    clq::fail(clq::Status::kInvalidShape, std::string(what) + " holds " + std::to_string(nbytes(a)) + " bytes; [" +
                                              std::to_string(rows) + ", " + std::to_string(cols) + "] of " +
                                              clq::dtype_name(t) + " is " + std::to_string(want));
}

clq::LoadOptions options(const std::string& format, int group_size) {
  clq::LoadOptions o;
  o.format = format;
  o.group_size = group_size;
  o.format_option = "format=";
  o.prefix_option = "the prefix";
  return o;
}

// A Context is not safe for concurrent use and the GIL is released during runs: the layers of
// one context take turns on its lock (kept beside it, keyed by the Context's address).
std::shared_ptr<std::mutex> lock_for(const clq::Context* c) {
  static std::mutex registry_mu;
  static std::map<const clq::Context*, std::weak_ptr<std::mutex>> registry;
  std::lock_guard<std::mutex> g(registry_mu);
  auto& w = registry[c];
  auto m = w.lock();
  if (!m) w = m = std::make_shared<std::mutex>();
  return m;
}

struct Staging {
  cl::Buffer dx, dy;
  size_t x_bytes = 0, y_bytes = 0;
  void grow(clq::Context& c, size_t xb, size_t yb) {
    if (xb > x_bytes) dx = c.alloc(xb, CL_MEM_READ_ONLY), x_bytes = xb;
    if (yb > y_bytes) dy = c.alloc(yb), y_bytes = yb;
  }
};

class PyLinear {
 public:
  PyLinear(std::shared_ptr<clq::Context> c, const std::string& path, const std::string& prefix,
           const std::string& format, int group_size)
      : ctx_(std::move(c)),
        mu_(lock_for(ctx_.get())),
        layer_(clq::load_linear(path, prefix, options(format, group_size))) {
    build();
  }
  // A dense layer quantized at load on the device (online quantization, `quantize` = method).
  PyLinear(std::shared_ptr<clq::Context> c, const std::string& path, const std::string& prefix,
           const std::string& format, int group_size, const std::string& quantize, bool asym)
      : ctx_(std::move(c)), mu_(lock_for(ctx_.get())) {
    if (!format.empty())
      clq::fail(clq::Status::kInvalidArgument, "format= describes a quantized checkpoint; quantize= takes a dense layer");
    const clq::QuantSpec spec = clq::quant_spec_from(quantize, group_size, asym);
    auto ck = std::make_shared<const clq::Checkpoint>(clq::Checkpoint::open(path));
    {
      std::lock_guard<std::mutex> lock(*mu_);
      quantized_ = std::make_unique<clq::OnlineQuantLayer>(clq::quantize_linear(*ctx_, ck, prefix, spec));
    }
    layer_ = quantized_->layer;
    build();
  }
  // (rel Frobenius error, max abs error) of a layer quantized at load; None otherwise.
  nb::object quant_error() const {
    if (!quantized_) return nb::none();
    return nb::make_tuple(quantized_->error.rel_fro(), quantized_->error.max_abs);
  }
  int64_t K() const { return layer_.K(); }
  int64_t N() const { return layer_.N(); }
  std::string description() const { return layer_.describe(); }
  std::string last_variant() const { return last_variant_; }

  void run(const InArray& x, int xcode, const OutArray& y, int ycode, int64_t M) {
    const clq::DType xt = dtype_of(xcode), yt = dtype_of(ycode);
    if (M < 1) clq::fail(clq::Status::kInvalidShape, "x has " + std::to_string(M) + " rows; at least 1 is needed");
    check_array(x, "x", M, K(), xt);
    check_array(y, "y", M, N(), yt);
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(*mu_);
    clq::Context& c = *ctx_;
    const size_t xb = nbytes(x), yb = nbytes(y);
    st_.grow(c, xb, yb);
    if (w4_) {
      w4_->can_implement(M, xt, yt, xb, yb);
      last_variant_ = w4_->choose(M, "").variant;
    } else if (gguf_) {
      gguf_->can_implement(M, xt, yt, xb, yb);
      last_variant_ = gguf_->choose(M, {}).variant;
    } else {
      fp8_->can_implement(M, xt, yt, xb, yb, fp8_->default_act());
      last_variant_ = fp8_->choose(M, fp8_->default_act(), "").variant;
    }
    c.write(st_.dx, x.data(), xb);
    if (w4_)
      w4_->run(st_.dx, xt, st_.dy, yt, M);
    else if (gguf_)
      gguf_->run(st_.dx, xt, st_.dy, yt, M);
    else
      fp8_->run(st_.dx, xt, st_.dy, yt, M);
    c.read(st_.dy, y.data(), yb);
  }

 private:
  void build() {
    std::lock_guard<std::mutex> lock(*mu_);
    if (layer_.is_int4()) {
      if (layer_.is_w8a8())
        clq::fail(clq::Status::kNotSupported, "'" + layer_.prefix + "' is a W8A8 int8 layer (activations quantized "
                                              "per token): Python does not run it yet (clquant gemm does)");
      w4_ = clq::make_int_layer_gemm(*ctx_, layer_.w4().ck);
    } else if (layer_.is_gguf()) {
      gguf_ = std::make_unique<clq::GgufGemm>(*ctx_, layer_.gguf());
    } else
      fp8_ = std::make_unique<clq::Fp8Gemm>(*ctx_, clq::repack_fp8(layer_.fp8().ck));
  }

  std::shared_ptr<clq::Context> ctx_;  // the ops hold a Context&
  std::shared_ptr<std::mutex> mu_;
  std::unique_ptr<clq::OnlineQuantLayer> quantized_;  // quantized at load: layer_ views its tensors
  clq::LinearLayer layer_;
  std::unique_ptr<clq::IntLayerGemm> w4_;  // int4 or int8 weight-only
  std::unique_ptr<clq::Fp8Gemm> fp8_;
  std::unique_ptr<clq::GgufGemm> gguf_;
  Staging st_;
  std::string last_variant_;
};

class PyMoe {
 public:
  PyMoe(std::shared_ptr<clq::Context> c, const std::string& path, const std::string& prefix, const std::string& format,
        int group_size)
      : ctx_(std::move(c)),
        mu_(lock_for(ctx_.get())),
        layer_(clq::load_moe(path, prefix, options(format, group_size))),
        op_(make_op()) {}
  int64_t E() const { return layer_.moe.E; }
  int64_t H() const { return layer_.moe.H; }
  int64_t I() const { return layer_.moe.I; }
  std::string kind() const { return clq::moe_kind_name(layer_.moe.kind); }
  int64_t shared_I() const { return op_.shared_I(); }
  bool shared_gated() const { return op_.shared_gated(); }
  // The routing config.json gives this block's model family (read_moe_config), or None.
  nb::object config_routing() const {
    if (!layer_.config) return nb::none();
    const clq::MoeRouting r = clq::moe_routing_from_config(*layer_.config);
    nb::dict d;
    d["top_k"] = r.top_k > 0 ? nb::object(nb::int_(r.top_k)) : nb::none();
    d["renormalize"] = r.renormalize;
    d["routing"] = r.kind == clq::MoeRouting::Kind::kGrouped ? "grouped" : "softmax";
    d["n_group"] = r.n_group;
    d["topk_group"] = r.topk_group;
    d["routed_scaling"] = r.routed_scaling;
    d["scoring"] = r.softmax_scores ? "softmax" : "sigmoid";
    d["model_type"] = layer_.config->model_type;
    d["source"] = layer_.config->source;
    return d;
  }

  void run(const InArray& x, int xcode, const OutArray& y, int ycode, int64_t T, int top_k, bool renormalize,
           bool grouped, int n_group, int topk_group, float routed_scaling, bool softmax_scores) {
    const clq::DType xt = dtype_of(xcode), yt = dtype_of(ycode);
    if (T < 1) clq::fail(clq::Status::kInvalidShape, "x has " + std::to_string(T) + " rows; at least 1 is needed");
    check_array(x, "x", T, H(), xt);
    check_array(y, "y", T, H(), yt);
    clq::MoeRouting r;
    r.top_k = top_k;
    r.renormalize = renormalize;
    r.kind = grouped ? clq::MoeRouting::Kind::kGrouped : clq::MoeRouting::Kind::kSoftmax;
    r.n_group = n_group;
    r.topk_group = topk_group;
    r.routed_scaling = routed_scaling;
    r.softmax_scores = softmax_scores;
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(*mu_);
    clq::Context& c = *ctx_;
    const size_t xb = nbytes(x), yb = nbytes(y);
    op_.can_implement(T, xt, yt, xb, yb, r, {});
    st_.grow(c, xb, yb);
    c.write(st_.dx, x.data(), xb);
    op_.run(st_.dx, xt, st_.dy, yt, T, r);
    c.read(st_.dy, y.data(), yb);
  }

 private:
  clq::MoeBlock make_op() {
    std::lock_guard<std::mutex> lock(*mu_);
    return clq::MoeBlock(*ctx_, layer_.moe);
  }
  std::shared_ptr<clq::Context> ctx_;
  std::shared_ptr<std::mutex> mu_;
  clq::MoeLayer layer_;
  clq::MoeBlock op_;  // routed experts, and the shared ones when the checkpoint has them
  Staging st_;
};

// clquant.inspect: the JSON of `clquant inspect --json` for the context's device. Loading the
// layers touches no device (the features only pick the variants), so no lock is taken.
std::string inspect_json(const std::shared_ptr<clq::Context>& c, const std::string& path, const std::string& format,
                         int group_size) {
  nb::gil_scoped_release release;
  return clq::inventory_json(clq::inspect_checkpoint(path, &c->features(), options(format, group_size)),
                             c->features().device_name)
      .dump();
}

// clquant.verify: the JSON of `clquant verify --json`. progress (None or a callable) gets
// (index, total, prefix, row JSON or None) before and after each layer, with the GIL held; an
// exception it raises ends the run and reaches the caller.
std::string verify_json(const std::shared_ptr<clq::Context>& c, const std::string& path, const std::string& layers,
                        int64_t tokens, uint64_t seed, const std::string& format, int group_size,
                        const nb::object& progress) {
  clq::VerifyOptions o;
  o.layers = layers;
  o.tokens = tokens;
  o.seed = seed;
  o.load = options(format, group_size);
  if (!progress.is_none())
    o.progress = [&progress](size_t i, size_t n, const clq::LayerInfo& l, const clq::LayerCheck* done) {
      nb::gil_scoped_acquire acquire;
      nb::object row = done ? nb::object(nb::str(clq::layer_check_json(*done).dump().c_str())) : nb::none();
      progress(i, n, l.prefix, row);
    };
  const std::shared_ptr<std::mutex> mu = lock_for(c.get());
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(*mu);
  return clq::verify_report_json(clq::verify_checkpoint(*c, path, o), c->features().device_name).dump();
}

}  // namespace

NB_MODULE(_clquant, m) {
  m.doc() = "clquant native module (use the clquant package)";
  static nb::exception<clq::Error> error(m, "Error", PyExc_RuntimeError);
  // Messages carry the status name, e.g. "[InvalidShape] input [3, 100] must be ...".
  nb::register_exception_translator(
      [](const std::exception_ptr& p, void* payload) {
        try {
          std::rethrow_exception(p);
        } catch (const clq::Error& e) {
          std::string msg = std::string("[") + clq::status_name(e.status()) + "] " + e.what();
          PyErr_SetString(static_cast<PyObject*>(payload), msg.c_str());
        }
      },
      error.ptr());

  m.def("version", [] { return std::string(clq::version()); });
  m.def("git_revision", [] { return std::string(clq::git_revision()); });
  m.def("devices_json", [] { return clq::devices_json(clq::list_devices()).dump(); });

  nb::class_<clq::Context>(m, "Context")
      .def_static("open", [](const std::string& selector) { return clq::Context::open(selector); })
      .def_prop_ro("device_name", [](const clq::Context& c) { return c.features().device_name; })
      .def_prop_ro("device_index", &clq::Context::device_index)
      .def("capabilities_json", [](const clq::Context& c) { return clq::caps_json(c).dump(); });

  m.def("inspect_json", &inspect_json, nb::arg("context"), nb::arg("path"), nb::arg("format"), nb::arg("group_size"));
  m.def("verify_json", &verify_json, nb::arg("context"), nb::arg("path"), nb::arg("layers"), nb::arg("tokens"),
        nb::arg("seed"), nb::arg("format"), nb::arg("group_size"), nb::arg("progress").none());

  nb::class_<PyLinear>(m, "Linear")
      .def(nb::init<std::shared_ptr<clq::Context>, const std::string&, const std::string&, const std::string&, int>(),
           nb::arg("context"), nb::arg("path"), nb::arg("prefix"), nb::arg("format"), nb::arg("group_size"))
      .def_prop_ro("K", &PyLinear::K)
      .def_prop_ro("N", &PyLinear::N)
      .def_prop_ro("description", &PyLinear::description)
      .def(nb::init<std::shared_ptr<clq::Context>, const std::string&, const std::string&, const std::string&, int,
                    const std::string&, bool>(),
           nb::arg("context"), nb::arg("path"), nb::arg("prefix"), nb::arg("format"), nb::arg("group_size"),
           nb::arg("quantize"), nb::arg("asym"))
      .def_prop_ro("last_variant", &PyLinear::last_variant)
      .def_prop_ro("quant_error", &PyLinear::quant_error)
      .def("run", &PyLinear::run);

  m.def(
      "quantize_checkpoint",
      [](std::shared_ptr<clq::Context> c, const std::string& input, const std::string& output,
         const std::string& method, int group_size, bool asym, const std::string& layers, bool force,
         const std::string& max_shard_size) {
        clq::QuantizeCheckpointOptions o;
        o.input = input;
        o.output = output;
        o.spec = clq::quant_spec_from(method, group_size, asym);
        o.layers = layers;
        o.force = force;
        o.max_shard_size = clq::parse_byte_size(max_shard_size, "max_shard_size");
        auto mu = lock_for(c.get());
        nb::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(*mu);
        return clq::quantize_report_json(clq::quantize_checkpoint(*c, o), o.spec, -1);
      },
      nb::arg("context"), nb::arg("input"), nb::arg("output"), nb::arg("method"), nb::arg("group_size"),
      nb::arg("asym"), nb::arg("layers"), nb::arg("force"), nb::arg("max_shard_size") = "5GB");

  nb::class_<PyMoe>(m, "MoE")
      .def(nb::init<std::shared_ptr<clq::Context>, const std::string&, const std::string&, const std::string&, int>(),
           nb::arg("context"), nb::arg("path"), nb::arg("prefix"), nb::arg("format"), nb::arg("group_size"))
      .def_prop_ro("E", &PyMoe::E)
      .def_prop_ro("H", &PyMoe::H)
      .def_prop_ro("I", &PyMoe::I)
      .def_prop_ro("kind", &PyMoe::kind)
      .def_prop_ro("shared_I", &PyMoe::shared_I)
      .def_prop_ro("shared_gated", &PyMoe::shared_gated)
      .def("config_routing", &PyMoe::config_routing)
      .def("run", &PyMoe::run);
}
