#!/usr/bin/env bash
# Session 7, first H200 batch: W8A8 int8 on wgmma (tests, bench, torch._int_mm same run), the FP8
# wgmma kernel after its move onto common/wgmma_gemm.clh, and a W4A16 M=1 launch-shape sweep.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 200 build/tests/clquant_tests --gtest_filter='W8A8*:Fp8Gemm*:Fp8Wgmma*:Caps*:PtxPatch*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|error" "$O/tests.txt" | head -20
for v in nv_wgmma_s8 portable; do
  timeout 90 build/tools/clquant bench w8a8_int8 --shapes 8192x8192 --ms 1,16,64,256,4096 --variant $v --no-baseline --reps 10 > "$O/w8a8_$v.txt" 2>&1
  grep "M=" "$O/w8a8_$v.txt" | head -8
done
timeout 150 python3 bench/compare_torch.py --op w8a8_int8 --shapes 8192x8192,28672x8192 --ms 1,16,64,256,4096 --reps 30 --json-out "$O/cmp_w8a8.json" > "$O/cmp_w8a8.txt" 2>&1
echo "torch rc=$?"; grep -E "clquant|torch" "$O/cmp_w8a8.txt" | tail -40
timeout 60 build/tools/clquant bench fp8 --shapes 7168x16384 --ms 128,4096 --no-baseline --reps 10 > "$O/fp8.txt" 2>&1
grep "M=" "$O/fp8.txt" | head
for kn in kw=4 kw=2 kw=8 unroll=2 unroll=4 kw=8,unroll=2 wgs=16 wgs=4 kw=2,unroll=4; do
  printf "%-16s " "$kn"
  CLQ_NV_SKINNY=$kn timeout 30 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 1 --no-baseline --reps 20 2>&1 | grep "M=1" | head -1
done
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
