#!/usr/bin/env bash
# Session 7, second H200 batch: the quantizers after their rework (W8A8 int8 fast path, FP8 rows
# vector I/O), W8A8 int8 decode and prefill with the breakdown, torch in the same run.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 240 build/tests/clquant_tests --gtest_filter='W8A8*:Fp8Quant*:Fp8Gemm*:W4A8*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure" "$O/tests.txt" | head -20
timeout 90 build/tools/clquant bench w8a8_int8 --shapes 8192x8192 --ms 1,16,64,4096 --no-baseline --reps 10 --breakdown > "$O/w8a8_breakdown.txt" 2>&1
grep -E "M=|quant|wgmma|reduce" "$O/w8a8_breakdown.txt" | head -30
timeout 90 build/tools/clquant bench fp8 --shapes 7168x16384 --ms 16,64,4096 --no-baseline --reps 10 --breakdown > "$O/fp8_breakdown.txt" 2>&1
grep -E "M=|quant|wgmma|reduce" "$O/fp8_breakdown.txt" | head -30
timeout 200 python3 bench/compare_torch.py --op w8a8_int8 --shapes 8192x8192,28672x8192 --ms 1,16,64,256,4096 --reps 30 --json-out "$O/cmp_w8a8.json" > "$O/cmp_w8a8.txt" 2>&1
echo "torch w8a8 rc=$?"; grep -E "clquant|torch" "$O/cmp_w8a8.txt" | tail -40
timeout 200 python3 bench/compare_torch.py --op fp8 --shapes 7168x16384 --ms 1,16,64,128,4096 --reps 30 --json-out "$O/cmp_fp8.json" > "$O/cmp_fp8.txt" 2>&1
echo "torch fp8 rc=$?"; grep -E "clquant|torch" "$O/cmp_fp8.txt" | tail -20
