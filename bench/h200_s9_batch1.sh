#!/usr/bin/env bash
# Session 9, first H200 batch: fused_moe/nv_wgmma (prefill on wgmma) against the fp64 reference,
# then the MoE suite, then same-run torch._grouped_mm at T = 64, 512, 4096.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 150 build/tests/clquant_tests --gtest_filter='MoeWgmma*' > "$O/wg_tests.txt" 2>&1
echo "wg tests rc=$?"; grep -E "FAILED|PASSED|Failure|what|err|Which" "$O/wg_tests.txt" | head -30
timeout 200 build/tests/clquant_tests --gtest_filter='Moe*:Model.*' > "$O/moe_tests.txt" 2>&1
echo "moe tests rc=$?"; grep -E "FAILED|PASSED" "$O/moe_tests.txt" | head -20
timeout 200 python3 bench/compare_torch.py --op moe --models mixtral-8x7b,qwen3-30b-a3b --ms 64,512,4096 --reps 10 \
  --json-out "$O/cmp_moe.json" > "$O/cmp_moe.txt" 2>&1
echo "cmp rc=$?"; cat "$O/cmp_moe.txt" | head -60
