#!/usr/bin/env bash
# Session 8, sixth H200 batch: the final W4A16 nv_wgmma (consumer warpgroups chosen by waves),
# the wgmma suites, and cuBLAS fp16 / torch int4 in the same run.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 300 build/tests/clquant_tests --gtest_filter='W4A16*:Caps*:PtxPatch*:W8A8*:Fp8Wgmma*:Fp8Gemm*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests.txt" | head -30
timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 256,4096 --breakdown --no-baseline --reps 5 > "$O/breakdown.txt" 2>&1; grep -E "w4a16_gemm_nv" "$O/breakdown.txt" | head -4
timeout 240 python3 bench/compare_torch.py --op w4a16 --shapes 28672x8192,8192x8192 --ms 128,256,1024,4096 --reps 20 --json-out "$O/cmp_w4.json" > "$O/cmp_w4.txt" 2>&1
echo "torch rc=$?"; grep -E "^w4a16|fp16 matmul|int4" "$O/cmp_w4.txt"
timeout 60 build/tools/clquant bench fp8 --shapes 7168x16384 --ms 128,4096 --no-baseline --reps 10 2>&1 | grep " M=" | head -3
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
