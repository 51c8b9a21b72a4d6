#!/usr/bin/env bash
# Session 8, second H200 batch: W4A16 nv_wgmma with the scales in the fp16 A registers and one
# wgmma group in flight per turn (prescale/defer knobs against the fold build), the suite, and
# cuBLAS fp16 in the same run.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 300 build/tests/clquant_tests --gtest_filter='W4A16*:Caps*:PtxPatch*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests.txt" | head -30
for kn in prescale=0 prescale=1,defer=0 prescale=1,defer=1 prescale=1,stages=6 prescale=1,stages=10 prescale=1,group=16; do
  echo "== $kn"
  CLQ_NV_W4WGMMA=$kn timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 256,4096 --variant nv_wgmma --no-baseline --reps 10 2>&1 | grep -E "M=|rror" | head -3
done
timeout 200 python3 bench/compare_torch.py --op w4a16 --shapes 28672x8192,8192x8192 --ms 128,256,1024,4096 --reps 20 --json-out "$O/cmp_w4.json" > "$O/cmp_w4.txt" 2>&1
echo "torch rc=$?"; grep -E "^w4a16|fp16 matmul" "$O/cmp_w4.txt"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
