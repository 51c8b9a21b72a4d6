#!/usr/bin/env bash
# Session 8, fourth H200 batch: the final nv_wgmma defaults (128-row tiles, 6 stages, fp16 scales
# in A; the fold build with one fold per group), the suite, and cuBLAS fp16 / torch int4 in the
# same run at the shapes.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 300 build/tests/clquant_tests --gtest_filter='W4A16*:Caps*:PtxPatch*:W8A8*:Fp8Wgmma*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests.txt" | head -30
for kn in prescale=0 prescale=0,stages=8 group=4 group=16 stages=4; do
  echo "== $kn"
  CLQ_NV_W4WGMMA=$kn timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 256,4096 --variant nv_wgmma --no-baseline --reps 10 2>&1 | grep -E " M=|rror" | head -3
done
timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 4096 --breakdown --no-baseline --reps 5 > "$O/breakdown.txt" 2>&1; grep -A6 "M=4096" "$O/breakdown.txt" | head -12
timeout 240 python3 bench/compare_torch.py --op w4a16 --shapes 28672x8192,8192x8192 --ms 128,256,1024,4096 --reps 20 --json-out "$O/cmp_w4.json" > "$O/cmp_w4.txt" 2>&1
echo "torch rc=$?"; grep -E "^w4a16|fp16 matmul|int4" "$O/cmp_w4.txt"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
