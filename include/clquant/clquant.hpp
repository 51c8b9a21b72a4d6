// clquant's C++ API in one include: devices and contexts, the checkpoint loader, the ops.
//
//   auto ctx = clq::Context::open();                       // CLQ_DEVICE, else first GPU, else CPU
//   clq::LinearLayer l = clq::load_linear("ckpt/", "model.layers.0.mlp.down_proj");
//   clq::W4A16Gemm op(*ctx, clq::repack_w4(l.w4().ck));    // FP8 layers: clq::Fp8Gemm, repack_fp8
//   op.can_implement(M, xt, yt, x_bytes, y_bytes);          // throws clq::Error naming the rule
//   op.run(x, xt, y, yt, M);                                // cl::Buffer in and out
//
// The headers keep the paths they have in the source tree ("host/...", "runtime/..."), installed
// under include/clquant/, which the CMake target and clquant.pc put on the include path. Errors
// are clq::Error (runtime/status.h); the library never exits. host/caps/report.h (JSON reports) needs
// nlohmann_json and is left out of this umbrella.
#pragma once
#include "clquant/version.h"
#include "host/caps/caps.h"
#include "host/formats/fp8.h"
#include "host/formats/loader.h"
#include "host/formats/moe.h"
#include "host/formats/w4.h"
#include "host/numeric.h"
#include "host/ops/fp8/fp8_gemm.h"
#include "host/model/inspect.h"
#include "host/model/quantize.h"
#include "host/model/verify.h"
#include "host/ops/moe/fused_moe.h"
#include "host/ops/moe/moe_block.h"
#include "host/ops/quantize/weight_quant.h"
#include "host/ops/w4a16/w4a16_gemm.h"
#include "host/reference/reference.h"
#include "host/io/safetensors.h"
#include "host/version.h"
#include "runtime/context.h"
#include "runtime/device.h"
#include "runtime/status.h"
