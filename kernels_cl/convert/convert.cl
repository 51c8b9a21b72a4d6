// Conversion kernels over whole arrays: the device side of the bit-exactness tests (every code
// of every format) and of `clquant demo`. One work-item per element.
#include "common/numeric.clh"

__kernel void decode_fp16(__global const ushort* in, __global uint* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = as_uint(clq_fp16_to_f32(in[i]));
}
__kernel void decode_bf16(__global const ushort* in, __global uint* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = as_uint(clq_bf16_to_f32(in[i]));
}
__kernel void decode_e4m3(__global const uchar* in, __global uint* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = as_uint(clq_e4m3_to_f32(in[i]));
}
__kernel void decode_e5m2(__global const uchar* in, __global uint* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = as_uint(clq_e5m2_to_f32(in[i]));
}
__kernel void encode_fp16(__global const uint* in, __global ushort* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = clq_f32_to_fp16(as_float(in[i]));
}
__kernel void encode_bf16(__global const uint* in, __global ushort* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = clq_f32_to_bf16(as_float(in[i]));
}
__kernel void encode_e4m3(__global const uint* in, __global uchar* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = clq_f32_to_e4m3(as_float(in[i]));
}
__kernel void encode_e5m2(__global const uint* in, __global uchar* out, uint n) {
  uint i = get_global_id(0);
  if (i < n) out[i] = clq_f32_to_e5m2(as_float(in[i]));
}
