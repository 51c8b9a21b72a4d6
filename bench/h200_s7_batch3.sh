#!/usr/bin/env bash
# Session 7, third H200 batch: the merged MoE int8 experts (suites and a bench row).
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 300 build/tests/clquant_tests --gtest_filter='MoeInt8*:MoeDecode*:MoeRouting*:Caps*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure" "$O/tests.txt" | head -20
timeout 200 build/tools/clquant bench moe --experts int8 --ms 1,16,64 --reps 10 > "$O/moe_int8.txt" 2>&1
echo "bench rc=$?"; grep -E "T=|M=|moe" "$O/moe_int8.txt" | head -20
