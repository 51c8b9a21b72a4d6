#!/usr/bin/env bash
# Session 8, third H200 batch: W4A16 nv_wgmma with 256-row tiles (m64n256, setmaxnreg) against
# 128-row ones, its stage count, where it overtakes nv_mma_tiled at small M, and cuBLAS fp16 in
# the same run (CLQ_VARIANT forces nv_wgmma at every M of the comparison).
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 300 build/tests/clquant_tests --gtest_filter='W4A16*:Caps*:PtxPatch*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure|what" "$O/tests.txt" | head -30
for kn in tok=256 tok=128 tok=256,stages=4 tok=256,stages=6 tok=256,group=4 tok=256,group=16; do
  echo "== $kn"
  CLQ_NV_W4WGMMA=$kn timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192 --ms 256,4096 --variant nv_wgmma --no-baseline --reps 10 2>&1 | grep -E " M=|rror" | head -3
done
for v in nv_wgmma nv_mma_tiled; do
  echo "== small M $v"
  timeout 60 build/tools/clquant bench w4a16 --shapes 28672x8192,8192x8192 --ms 17,32,64,128 --variant $v --no-baseline --reps 10 2>&1 | grep -E " M=|rror" | head -8
done
CLQ_VARIANT=w4a16_gemm=nv_wgmma timeout 240 python3 bench/compare_torch.py --op w4a16 --shapes 28672x8192,8192x8192 --ms 64,128,256,1024,4096 --reps 20 --json-out "$O/cmp_w4.json" > "$O/cmp_w4.txt" 2>&1
echo "torch rc=$?"; grep -E "^w4a16|fp16 matmul" "$O/cmp_w4.txt"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
