#!/usr/bin/env bash
# The H200 batch of the wgmma FP8 work (session 6): probe, tests, variant sweep, torch same-run.
# Usage on the GPU machine: source .gpu/gpu-env.sh && bash bench/h200_wgmma.sh
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}
mkdir -p "$O"
build/tools/clquant caps > "$O/caps.txt" 2>&1
grep -i "wgmma\|notes" "$O/caps.txt" | head -20
timeout 300 build/tests/clquant_tests --gtest_filter="${TESTS:-Fp8*:Caps*:PtxPatch*}" > "$O/tests.txt" 2>&1
echo "tests rc=$?"; grep -E "FAILED|PASSED|Failure" "$O/tests.txt" | head -20
for v in ${VARIANTS:-nv_wgmma_e4m3 nv_mma_e4m3}; do
  timeout 200 build/tools/clquant bench fp8 --shapes ${SHAPES:-7168x16384} --ms ${MS:-128,512,4096} --variant $v --no-baseline --reps 20 > "$O/bench_$v.txt" 2>&1
  echo "bench $v rc=$?"; cat "$O/bench_$v.txt" | tail -8
done
for s in ${STAGES_SWEEP:-}; do
  CLQ_NV_WGMMA=stages=$s timeout 200 build/tools/clquant bench fp8 --shapes ${SHAPES:-7168x16384} --ms ${MS:-128,512,4096} --variant nv_wgmma_e4m3 --no-baseline --reps 20 > "$O/bench_st$s.txt" 2>&1
  echo "stages $s rc=$?"; tail -5 "$O/bench_st$s.txt"
done
if [ -n "${TORCH:-1}" ]; then
  timeout 300 python3 bench/compare_torch.py --op fp8 --shapes ${SHAPES:-7168x16384} --ms ${TMS:-128,4096} --reps 30 --json-out "$O/cmp_fp8.json" > "$O/cmp_fp8.txt" 2>&1
  echo "torch rc=$?"; tail -12 "$O/cmp_fp8.txt"
fi
