#!/usr/bin/env bash
# Session 8, first H200 batch: W4A16 prefill on wgmma (register-A int4, w4a16/nv_wgmma.cl): the
# suite, the variant against nv_mma_tiled, and cuBLAS fp16 / torch int4 in the same run.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 300 build/tests/clquant_tests --gtest_filter='W4A16*:Caps*:PtxPatch*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|error|what" "$O/tests.txt" | head -30
for v in nv_wgmma nv_mma_tiled; do
  timeout 120 build/tools/clquant bench w4a16 --shapes 28672x8192,8192x8192 --ms 128,256,1024,4096 --variant $v --no-baseline --reps 10 > "$O/w4_$v.txt" 2>&1
  echo "== $v rc=$?"; grep -E "M=|rror" "$O/w4_$v.txt" | head -10
done
for st in 4 6 10; do
  printf "stages=%-3s " $st
  CLQ_NV_W4WGMMA=stages=$st timeout 40 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 4096 --variant nv_wgmma --no-baseline --reps 10 2>&1 | grep "M=" | head -1
done
timeout 200 python3 bench/compare_torch.py --op w4a16 --shapes 28672x8192,8192x8192 --ms 256,4096 --reps 20 --json-out "$O/cmp_w4.json" > "$O/cmp_w4.txt" 2>&1
echo "torch rc=$?"; tail -30 "$O/cmp_w4.txt"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
