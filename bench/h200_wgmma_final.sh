#!/usr/bin/env bash
# Last H200 batch of session 6: tests, the breakdown (GEMM kernel apart from the quantizer),
# knock-outs, both tensor-core FP8 variants over M, and torch in the same run.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
timeout 240 build/tests/clquant_tests --gtest_filter='Fp8*:Caps*:PtxPatch*:W4A8*' > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure" "$O/tests.txt" | head
timeout 60 build/tools/clquant bench fp8 --shapes 7168x16384 --ms 128,4096 --no-baseline --reps 10 --breakdown > "$O/breakdown.txt" 2>&1
grep -iE "wgmma|quant|rows_from" "$O/breakdown.txt" | head -12
MS=4096 KNOBS="ko=1 ko=2 ko=3 ko=4 ko=6" bash bench/h200_wgmma_sweep.sh 2>&1 | grep -v "ms over" > "$O/knockouts.txt"; cat "$O/knockouts.txt"
for v in nv_wgmma_e4m3 nv_mma_e4m3; do
  timeout 120 build/tools/clquant bench fp8 --shapes 7168x16384 --ms 16,32,64,128,256,512,1024,4096 --variant $v --no-baseline --reps 10 > "$O/m_$v.txt" 2>&1
  grep "x16384 M=" "$O/m_$v.txt" | awk '{print $1,$2,$3,$5,$9}'
done
timeout 200 python3 bench/compare_torch.py --op fp8 --shapes 7168x16384 --ms 16,64,128,512,4096 --reps 30 --json-out "$O/cmp_fp8.json" > "$O/cmp_fp8.txt" 2>&1
echo "torch rc=$?"; grep -E "clquant|torch" "$O/cmp_fp8.txt" | tail -16
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv
