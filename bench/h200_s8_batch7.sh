#!/usr/bin/env bash
# Session 8, seventh H200 batch: the merged hygiene branch's one int4/int8 expert packer on the
# tensor-core device (MoE suites), and inspect's per-op variants there.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 400 build/tests/clquant_tests --gtest_filter='Moe*:Model.*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests.txt" | head -30
