#!/usr/bin/env bash
# Session 8, fifth H200 batch: W4A16 nv_wgmma with three consumer warpgroups (cwg=3, 192-column
# tiles, setmaxnreg 56/152): the suite under that knob, and its speed against cwg=2.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
CLQ_NV_W4WGMMA=cwg=3 timeout 300 build/tests/clquant_tests --gtest_filter='W4A16*' > "$O/tests_cwg3.txt" 2>&1
echo "tests cwg=3 rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests_cwg3.txt" | head -20
for kn in cwg=2 cwg=3 cwg=3,stages=8 cwg=3,group=16; do
  echo "== $kn"
  CLQ_NV_W4WGMMA=$kn timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192,8192x8192 --ms 128,256,4096 --variant nv_wgmma --no-baseline --reps 10 2>&1 | grep -E " M=|rror" | head -6
done
