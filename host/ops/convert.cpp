#include "host/ops/convert.h"
#include "host/ops/launcher.h"

#include "host/caps/caps.h"
#include "host/numeric.h"
#include "runtime/status.h"

namespace clq {

const char* num_format_name(NumFormat f) {
  switch (f) {
    case NumFormat::kFp16:
      return "fp16";
    case NumFormat::kBf16:
      return "bf16";
    case NumFormat::kE4m3:
      return "e4m3";
    case NumFormat::kE5m2:
      return "e5m2";
  }
  return "?";
}

namespace {
size_t round_up(size_t v, size_t m) {
  return (v + m - 1) / m * m;
}

std::vector<uint32_t> run(Context& c, NumFormat f, const std::vector<uint32_t>& in, bool decode) {
  const VariantRow& row = select_variant("convert", c.features(), 0);
  size_t n = in.size();
  if (n == 0) return {};
  if (n > 0xFFFFFFFFu) fail(Status::kInvalidArgument, "conversion of more than 2^32-1 elements");
  size_t code_bytes = size_t(num_format_bits(f) / 8);
  size_t in_elem = decode ? code_bytes : 4, out_elem = decode ? 4 : code_bytes;
  std::vector<uint8_t> packed(n * in_elem);
  for (size_t i = 0; i < n; ++i) {
    if (in_elem == 4)
      std::memcpy(&packed[i * 4], &in[i], 4);
    else if (in_elem == 2) {
      uint16_t v = uint16_t(in[i]);
      std::memcpy(&packed[i * 2], &v, 2);
    } else
      packed[i] = uint8_t(in[i]);
  }
  cl::Buffer din = c.alloc(packed.size()), dout = c.alloc(round_up(n * out_elem, 4));
  c.write(din, packed.data(), packed.size());
  // Poison: a kernel that skipped an element leaves this pattern, never a plausible value.
  c.fill_u32(dout, 0xA5A5A5A5u, round_up(n * out_elem, 4));
  std::string name = std::string(decode ? "decode_" : "encode_") + num_format_name(f);
  cl::Kernel k = c.kernel(row_kernel_file(row), name);
  set_args(k, din, dout, cl_uint(n));
  launch(c, k, cl::NDRange(round_up(n, 64)), cl::NDRange(64), name);
  std::vector<uint8_t> raw(n * out_elem);
  c.read(dout, raw.data(), raw.size());
  std::vector<uint32_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (out_elem == 4)
      std::memcpy(&out[i], &raw[i * 4], 4);
    else if (out_elem == 2) {
      uint16_t v;
      std::memcpy(&v, &raw[i * 2], 2);
      out[i] = v;
    } else
      out[i] = raw[i];
  }
  return out;
}
}  // namespace

std::vector<uint32_t> device_decode(Context& c, NumFormat f, const std::vector<uint32_t>& codes) {
  return run(c, f, codes, true);
}
std::vector<uint32_t> device_encode(Context& c, NumFormat f, const std::vector<uint32_t>& bits) {
  return run(c, f, bits, false);
}

std::vector<uint32_t> host_decode(NumFormat f, const std::vector<uint32_t>& codes) {
  std::vector<uint32_t> out(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) {
    float v = 0;
    switch (f) {
      case NumFormat::kFp16:
        v = fp16_to_f32(uint16_t(codes[i]));
        break;
      case NumFormat::kBf16:
        v = bf16_to_f32(uint16_t(codes[i]));
        break;
      case NumFormat::kE4m3:
        v = e4m3_to_f32(uint8_t(codes[i]));
        break;
      case NumFormat::kE5m2:
        v = e5m2_to_f32(uint8_t(codes[i]));
        break;
    }
    out[i] = f32_bits(v);
  }
  return out;
}

std::vector<uint32_t> host_encode(NumFormat f, const std::vector<uint32_t>& bits) {
  std::vector<uint32_t> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    float v = bits_f32(bits[i]);
    switch (f) {
      case NumFormat::kFp16:
        out[i] = f32_to_fp16(v);
        break;
      case NumFormat::kBf16:
        out[i] = f32_to_bf16(v);
        break;
      case NumFormat::kE4m3:
        out[i] = f32_to_e4m3(v);
        break;
      case NumFormat::kE5m2:
        out[i] = f32_to_e5m2(v);
        break;
    }
  }
  return out;
}

}  // namespace clq
