// One quantized linear layer through the installed C++ API: load it from a checkpoint, run it on
// the activations in a safetensors file, and compare with the fp64 host reference.
//
//   linear_layer CKPT PREFIX INPUT.safetensors     (tensor 'input' [M, K], F16/BF16/F32)
//
// Exit 0 when the result is within the SPEC tolerance, 1 when not, 2 on an error.
#include <clquant/clquant.hpp>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: linear_layer CKPT PREFIX INPUT.safetensors\n";
    return 2;
  }
  try {
    auto ctx = clq::Context::open();  // CLQ_DEVICE, else the first GPU, else the first CPU
    clq::LinearLayer layer = clq::load_linear(argv[1], argv[2]);
    if (!layer.is_int4()) throw clq::Error(clq::Status::kNotSupported, "this example runs int4 layers");
    std::cout << "clquant " << clq::version() << " (" << clq::git_revision() << ") on " << ctx->features().device_name
              << "\n"
              << argv[2] << ": " << layer.describe() << ", K=" << layer.K() << " N=" << layer.N() << "\n";

    auto in = clq::SafetensorsFile::open(argv[3]);
    const clq::StTensor* x = in->find("input");
    if (!x || x->shape.size() != 2 || x->shape[1] != layer.K() || x->dtype != clq::StDType::kF16)
      throw clq::Error(clq::Status::kInvalidShape, "INPUT needs an F16 tensor 'input' [M, K]");
    const int64_t M = x->shape[0], N = layer.N();
    const clq::DType dt = clq::DType::kF16;

    clq::W4A16Gemm op(*ctx, clq::repack_w4(layer.w4().ck));
    const size_t ybytes = size_t(M * N) * clq::dtype_size(dt);
    op.can_implement(M, dt, dt, x->nbytes, ybytes);
    cl::Buffer dx = ctx->alloc(x->nbytes, CL_MEM_READ_ONLY), dy = ctx->alloc(ybytes);
    ctx->write(dx, x->data, x->nbytes);
    clq::OpEvents ev = op.run(dx, dt, dy, dt, M);
    std::vector<uint8_t> y(ybytes);
    ctx->read(dy, y.data(), ybytes);

    auto ref = clq::gemm_reference(x->data, dt, M, layer.K(), clq::dequantize_w4(layer.w4().ck), N);
    clq::ErrorStats e = clq::compare_output(y.data(), dt, ref);
    const bool ok = e.nan_count == 0 && e.rel_mean() < clq::W4A16Problem::kTolerance;
    std::cout << "M=" << M << ": " << ev.ms() << " ms, rel mean err " << e.rel_mean() << (ok ? "  PASS\n" : "  FAIL\n");
    return ok ? 0 : 1;
  } catch (const clq::Error& e) {
    std::cerr << "error [" << clq::status_name(e.status()) << "]: " << e.what() << "\n";
    return 2;
  }
}
