#!/usr/bin/env bash
# Session 8, eighth H200 batch: the three wgmma GEMMs after their shared prologue
# (clq_wg_begin in common/wgmma_gemm.clh): their suites.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 240 build/tests/clquant_tests --gtest_filter='W4A16*:W8A8*:Fp8Wgmma*:Fp8Gemm*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests.txt" | head -20
