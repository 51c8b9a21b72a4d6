/* clquant C API: for other languages and for C programs. The C++ API (clquant/clquant.hpp) stays
 * the main one; this is a thin layer over it that never lets an exception out.
 *
 * Every function that can fail returns a clq_status: CLQ_SUCCESS (0), one of clquant's own codes
 * below, or an OpenCL error code (negative, -1 .. -72, e.g. -5 CL_OUT_OF_RESOURCES) passed
 * through unchanged. After a failure clq_last_error() holds the message naming the rule and the
 * values (thread-local: each thread sees its own last call).
 *
 * Handles: a clq_context is one opened OpenCL device (context, in-order profiling queue, program
 * cache). clq_linear and clq_moe are layers loaded from a checkpoint on that device; each keeps
 * its context alive, so handles may be released in any order. Any thread may call any handle: the
 * calls on one context (its layers included) take turns on a lock that context holds. Releasing
 * a handle while another thread uses it is the caller's error.
 *
 * Buffers: the *_run_host functions take host arrays, copy them in, run, and copy the result out
 * (blocking). The *_run_cl functions take caller-owned cl_mem buffers created on the context
 * returned by clq_context_cl_context(); they enqueue on clq_context_cl_queue() and return
 * without waiting (call clq_context_finish() or wait on the queue). Their sizes are checked
 * before anything is enqueued.
 *
 * Layout: x is [M][K] row-major, y is [M][N] row-major, in the dtype given. */
#ifndef CLQUANT_C_H
#define CLQUANT_C_H

#include <stddef.h>
#include <stdint.h>

#include "clquant/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The same pointer types as cl_mem, cl_context and cl_command_queue of <CL/cl.h>, so this header
 * does not need the OpenCL headers and OpenCL users pass their handles unchanged. */
typedef struct _cl_mem* clq_cl_mem;
typedef struct _cl_context* clq_cl_context;
typedef struct _cl_command_queue* clq_cl_command_queue;

typedef int clq_status;
enum {
  CLQ_SUCCESS = 0,
  CLQ_ERROR_INVALID_ARGUMENT = -2000,    /* a value the caller passed breaks a documented rule */
  CLQ_ERROR_INVALID_SHAPE = -2001,       /* tensor shapes disagree with each other or the format */
  CLQ_ERROR_NOT_SUPPORTED = -2002,       /* the device or clquant lacks what the request needs */
  CLQ_ERROR_DEVICE_NOT_FOUND = -2003,    /* no OpenCL device, or none matches the selector */
  CLQ_ERROR_BUILD_FAILED = -2004,        /* a kernel failed to compile; the message holds the log */
  CLQ_ERROR_IO = -2005,                  /* a file could not be opened, read or written */
  CLQ_ERROR_FORMAT = -2006,              /* a file is malformed (safetensors, JSON, checkpoint) */
  CLQ_ERROR_CACHE = -2007,               /* the program cache could not be used */
  CLQ_ERROR_VERIFICATION_FAILED = -2008, /* a result disagreed with its reference */
  CLQ_ERROR_INTERNAL = -2099             /* a bug in clquant (or out of host memory) */
};

typedef enum clq_dtype { CLQ_F32 = 0, CLQ_F16 = 1, CLQ_BF16 = 2 } clq_dtype;

typedef struct clq_context clq_context;
typedef struct clq_linear clq_linear;
typedef struct clq_moe clq_moe;

/* "0.1.0": the library's version (CLQ_VERSION_STRING is the version compiled against). */
const char* clq_version(void);
/* The git revision the library was configured from, or "unknown". */
const char* clq_git_revision(void);
/* This thread's last error message ("" before any failure). Valid until the next failing call. */
const char* clq_last_error(void);
/* "CLQ_ERROR_INVALID_SHAPE", "CL_OUT_OF_RESOURCES", ...: a static string for any status. */
const char* clq_status_name(clq_status status);

/* Every OpenCL device as JSON (the output of `clquant devices --json`). Writes at most `size`
 * bytes including the terminating 0 into buf (buf may be NULL when size is 0) and the full
 * length without the 0 into *needed (when not NULL); CLQ_ERROR_INVALID_ARGUMENT if it did not fit. */
clq_status clq_devices_json(char* buf, size_t size, size_t* needed);

/* selector: NULL or "" = CLQ_DEVICE, else the first GPU, else the first CPU; digits = a device
 * index; otherwise a case-insensitive substring of the platform or device name. */
clq_status clq_context_open(const char* selector, clq_context** out);
void clq_context_release(clq_context* ctx); /* NULL is ignored */
/* The device's name (valid while ctx lives). */
const char* clq_context_device_name(const clq_context* ctx);
/* Features, the variant chosen per op and the support matrix as JSON (`clquant caps --json`);
 * buffer rules as clq_devices_json. */
clq_status clq_context_capabilities_json(clq_context* ctx, char* buf, size_t size, size_t* needed);
clq_cl_context clq_context_cl_context(clq_context* ctx);
clq_cl_command_queue clq_context_cl_queue(clq_context* ctx);
clq_status clq_context_finish(clq_context* ctx);

/* A linear layer y = x @ W from a checkpoint (a .safetensors file, a sharded
 * model.safetensors.index.json, or a folder holding either) and a layer prefix
 * ("model.layers.0.mlp.down_proj"). format: NULL or "" to decide it from quantize_config.json /
 * config.json or the tensor shapes; else "gptq", "gptq_v2" or "awq" (int4 layers). group_size: 0
 * for the config's (else the shapes'), -1 for one group. FP8 layers run W8A8 with their default
 * activation quantization. Integer layers may be int8 weight-only (GPTQ 8-bit, compressed-tensors
 * int8): the width comes from the config or the tensors. The weights are uploaded once, here. */
clq_status clq_linear_load(clq_context* ctx, const char* path, const char* prefix, const char* format,
                           int group_size, clq_linear** out);
void clq_linear_release(clq_linear* layer);
clq_status clq_linear_shape(const clq_linear* layer, int64_t* K, int64_t* N);
/* "gptq (from .../quantize_config.json), group 128" or "fp8 e4m3 128x128 block scales". */
const char* clq_linear_describe(const clq_linear* layer);
/* The kernel variant the last run used ("gemv", "tiled", ...); "" before any run. */
const char* clq_linear_last_variant(const clq_linear* layer);
clq_status clq_linear_run_host(clq_linear* layer, const void* x, clq_dtype xt, void* y, clq_dtype yt, int64_t M);
clq_status clq_linear_run_cl(clq_linear* layer, clq_cl_mem x, clq_dtype xt, clq_cl_mem y, clq_dtype yt, int64_t M);

/* The same for a dense (F16/BF16/F32) layer P.weight quantized at load on the device (online
 * quantization, docs/numerics.md): method "int4", "int8" or "fp8-block"; group_size 0 for 128
 * (int methods; must be 0 for fp8-block), -1 for one group per row; asym nonzero for asymmetric
 * integer codes. The layer then runs the matching method (W4A16, W8A16 int8, W8A8 block FP8). */
clq_status clq_linear_load_quantized(clq_context* ctx, const char* path, const char* prefix, const char* method,
                                     int group_size, int asym, clq_linear** out);
/* Quantization error of a layer from clq_linear_load_quantized: ||Wdeq - W||_F / ||W||_F and
 * max |Wdeq - W| (InvalidArgument for a layer that was loaded already quantized). */
clq_status clq_linear_quant_error(const clq_linear* layer, double* rel_fro, double* max_abs);

/* Online quantization of a whole dense checkpoint into the folder `output` (`clquant quantize`:
 * model.safetensors and config.json, compressed-tensors pack-quantized int4/int8 or Hugging Face
 * block FP8). method, group_size and asym as for clq_linear_load_quantized; layers: NULL or "" for
 * the default rule (every 2-D *.weight except embeddings, lm_head, norms, routers), else an
 * ECMAScript regular expression searched in layer names; force nonzero lets `output` be a
 * non-empty folder (its model.safetensors and config.json are replaced; never an input). On
 * success the report (JSON, as `clquant quantize --json`) is copied to buf when it fits (`size`
 * bytes, terminator included; buf NULL with size 0 skips it); `needed` receives its length. A
 * buffer too small is reported as InvalidArgument after the checkpoint was written. */
clq_status clq_quantize_checkpoint(clq_context* ctx, const char* input, const char* output, const char* method,
                                   int group_size, int asym, const char* layers, int force, char* buf, size_t size,
                                   size_t* needed);

/* The same with every option in one struct, including the output's shard size. Fill with
 * clq_quantize_options_init, then set what differs (a later minor release may add fields at the
 * end, which init sets to their defaults). */
typedef struct clq_quantize_options {
  const char* method;      /* "int4", "int8" or "fp8-block" (default "int4") */
  int group_size;          /* as clq_quantize_checkpoint (default 0: 128 for the int methods) */
  int asym;                /* nonzero: asymmetric integer codes (default 0) */
  const char* layers;      /* as clq_quantize_checkpoint (default NULL: the default rule) */
  int force;               /* as clq_quantize_checkpoint (default 0); with sharded output the earlier
                              model.safetensors / index / model-*-of-*.safetensors not rewritten are removed */
  uint64_t max_shard_size; /* most tensor bytes per file (default 5000000000, transformers' "5GB"); past
                              it `output` holds model-00001-of-0000N.safetensors ... and
                              model.safetensors.index.json; a larger tensor has a file of its own; 0 is
                              refused (InvalidArgument) */
} clq_quantize_options;
void clq_quantize_options_init(clq_quantize_options* o);
/* clq_quantize_checkpoint with options (NULL: the defaults); report, buf, size and needed as there. */
clq_status clq_quantize(clq_context* ctx, const char* input, const char* output, const clq_quantize_options* options,
                        char* buf, size_t size, size_t* needed);

/* MoE routing (SPEC section 5). Fill with clq_moe_routing_init, then set what differs. */
typedef struct clq_moe_routing {
  int top_k;            /* experts per token (default 2) */
  int renormalize;      /* divide the chosen weights by their sum (default 0) */
  int grouped;          /* 0: softmax (Mixtral, Qwen-MoE); 1: grouped (DeepSeek-V3 noaux_tc) */
  int n_group;          /* grouped: expert groups (default 1) */
  int topk_group;       /* grouped: groups kept (default 1) */
  float routed_scaling; /* grouped: routed_scaling_factor (default 1) */
  int softmax_scores;   /* grouped: 0 sigmoid scores (default), 1 softmax */
} clq_moe_routing;
void clq_moe_routing_init(clq_moe_routing* r);

/* A fused MoE block: P.gate.weight (+ P.gate.e_score_correction_bias) and
 * P.experts.{e}.{gate,up,down}_proj, dense fp16/bf16, int4 (format as for clq_linear_load) or
 * block FP8 experts, and the shared experts when present (P.shared_experts.*, DeepSeek-V3; or
 * P.shared_expert.* gated by P.shared_expert_gate.weight, Qwen2-MoE), which every run adds.
 * x and y are [T][H]. */
clq_status clq_moe_load(clq_context* ctx, const char* path, const char* prefix, const char* format, int group_size,
                        clq_moe** out);
void clq_moe_release(clq_moe* layer);
clq_status clq_moe_shape(const clq_moe* layer, int64_t* E, int64_t* H, int64_t* I);
/* The block's shared experts, which every run adds to the routed output: *shared_I = their
 * intermediate size (0: none), *gated = 1 for Qwen2-MoE's sigmoid-gated shared expert. Either
 * pointer may be NULL. */
clq_status clq_moe_shared_experts(const clq_moe* layer, int64_t* shared_I, int* gated);
/* The routing of the model family named by config.json beside the weights (Mixtral,
 * Qwen2/3-MoE, DeepSeek-V2/V3): *found = 1 and *routing filled (top_k 0 when the config does not
 * give num_experts_per_tok), or *found = 0 and *routing left as clq_moe_routing_init makes it.
 * Change any field before a run to override the config. */
clq_status clq_moe_config_routing(const clq_moe* layer, clq_moe_routing* routing, int* found);
clq_status clq_moe_run_host(clq_moe* layer, const void* x, clq_dtype xt, void* y, clq_dtype yt, int64_t T,
                            const clq_moe_routing* routing);
clq_status clq_moe_run_cl(clq_moe* layer, clq_cl_mem x, clq_dtype xt, clq_cl_mem y, clq_dtype yt, int64_t T,
                          const clq_moe_routing* routing);

/* Whole checkpoints (`clquant inspect` / `clquant verify`): the path takes what clq_linear_load
 * takes; format and group_size apply to int4 layers as there. A report is a handle: release it
 * with clq_report_release; the strings it returns stay valid while it lives. */
typedef struct clq_report clq_report;

/* Every quantized linear layer and MoE block of a checkpoint, each loaded and described (format,
 * shapes, group size, bytes) with the variant it would run on ctx's device for M=1 and M=512
 * (ctx NULL: no device, no variants). A layer the loader refuses is listed with its error and
 * counted as failed; the call still succeeds. A checkpoint that cannot be opened is an error. */
clq_status clq_inspect(clq_context* ctx, const char* path, const char* format, int group_size, clq_report** out);

/* Called on the calling thread before each layer (done = 0, ok = 0) and after it (done = 1, ok =
 * whether it passed). It must not call clquant on the same context (that context's lock is held). */
typedef void (*clq_verify_progress_fn)(void* user, size_t index, size_t total, const char* prefix, int done, int ok);

/* Fill with clq_verify_options_init, then set what differs (a later minor release may add fields at
 * the end, which init sets to their defaults; see the README on the ABI while the major version is 0). */
typedef struct clq_verify_options {
  const char* layers;  /* ECMAScript regex searched in each layer prefix; NULL or "" = every layer */
  int64_t tokens;      /* rows of random bf16 activations per layer, 1 .. 4096 (default 5) */
  uint64_t seed;       /* random seed of the activations (default 1) */
  const char* format;  /* int4 layers, as clq_linear_load (default NULL) */
  int group_size;      /* as clq_linear_load (default 0) */
  clq_verify_progress_fn progress; /* NULL: none */
  void* progress_user;             /* passed to progress */
} clq_verify_options;
void clq_verify_options_init(clq_verify_options* o);

/* Runs every selected layer once on ctx's device against its fp64 host reference (docs/numerics.md
 * tolerances), one layer in device memory at a time. options NULL = the defaults. Returns
 * CLQ_SUCCESS when every layer passed; CLQ_ERROR_VERIFICATION_FAILED when one failed by its
 * numbers or was refused, with clq_last_error() naming the failed layers and *out STILL set to
 * the report (release it); any other status (bad path, a regex that is malformed or matches no
 * layer, tokens out of range) leaves *out NULL. */
clq_status clq_verify(clq_context* ctx, const char* path, const clq_verify_options* options, clq_report** out);

/* The report as JSON, the document `clquant inspect --json` / `clquant verify --json` prints:
 * {path, device, layers: [{prefix, kind, format, K, N | E, H, I, shared_I, group_size, bytes,
 * variant, error, and for verify ok, variant_ran, rel_err, max_abs_err, nan, tolerance, ms,
 * device_ms}], ...}; a non-finite error (a layer whose output overflowed) is null. "" for NULL. */
const char* clq_report_json(const clq_report* report);
/* Layers listed or run; failed: refused by the loader (inspect) or failed (verify); the worst
 * mean relative error over the layers that ran and its layer ("" for inspect). Any pointer but
 * report may be NULL. */
clq_status clq_report_summary(const clq_report* report, size_t* layers, size_t* failed, double* worst_rel_err,
                              const char** worst_layer);
/* Layer `index` (model order): its prefix, *ok = 1 when it loaded (inspect) or passed (verify),
 * its mean relative error (0 for inspect or a layer that did not run), and *message the refusal
 * ("" when none). Any output pointer may be NULL; an index out of range is INVALID_ARGUMENT. */
clq_status clq_report_layer(const clq_report* report, size_t index, const char** prefix, int* ok, double* rel_err,
                            const char** message);
void clq_report_release(clq_report* report); /* NULL is ignored */

#ifdef __cplusplus
}
#endif

#endif /* CLQUANT_C_H */
