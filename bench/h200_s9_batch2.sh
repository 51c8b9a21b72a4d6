#!/usr/bin/env bash
# Session 9, second H200 batch: a Qwen3-like shape in the suite, where the bench crashed, the
# Mixtral T=4096 breakdown and its knock-out builds, T=64 forced onto nv_wgmma.
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}; mkdir -p "$O"
B=build/tools/clquant
timeout 120 build/tests/clquant_tests --gtest_filter='MoeWgmma*' > "$O/wg_tests.txt" 2>&1
echo "wg tests rc=$?"; grep -E "FAILED|PASSED|Failure|what|err|Which" "$O/wg_tests.txt" | head -30
if command -v gdb >/dev/null; then
  timeout 120 gdb -batch -ex run -ex bt --args $B bench moe --models qwen3-30b-a3b --ms 64,512 --reps 3 > "$O/qwen_gdb.txt" 2>&1
  echo "gdb rc=$?"; grep -v "^\[New Thread\|^\[Thread" "$O/qwen_gdb.txt" | tail -30
else
  timeout 120 $B bench moe --models qwen3-30b-a3b --ms 512 --reps 3 > "$O/qwen.txt" 2>&1; echo "qwen 512 rc=$?"; tail -5 "$O/qwen.txt"
  timeout 120 $B bench moe --models qwen3-30b-a3b --ms 64 --reps 3 > "$O/qwen64.txt" 2>&1; echo "qwen 64 rc=$?"; tail -5 "$O/qwen64.txt"
fi
timeout 100 $B bench moe --models mixtral-8x7b --ms 4096 --reps 5 --breakdown > "$O/mix4096.txt" 2>&1
echo "mix rc=$?"; tail -22 "$O/mix4096.txt"
for ko in 1 2; do
  CLQ_NV_MOEWGMMA=ko=$ko timeout 100 $B bench moe --models mixtral-8x7b --ms 4096 --reps 3 --breakdown > "$O/mix4096_ko$ko.txt" 2>&1
  echo "ko=$ko rc=$?"; grep -E "gate_up|down|median" "$O/mix4096_ko$ko.txt" | head -6
done
timeout 100 $B bench moe --models mixtral-8x7b --ms 64 --reps 10 --variant nv_wgmma --breakdown > "$O/mix64.txt" 2>&1
echo "mix64 rc=$?"; grep -E "gate_up|down|median|T=64" "$O/mix64.txt" | head -8
