// The device's copy ceiling for benchmarks: a plain float4 copy, one vector per work-item.
// Bytes read + bytes written over its time is the bandwidth every memory-bound kernel is
// judged against.
__kernel void bench_copy(__global const float4* restrict src, __global float4* restrict dst, uint n) {
  const uint i = get_global_id(0);
  if (i < n) dst[i] = src[i];
}
