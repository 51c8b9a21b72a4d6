#!/usr/bin/env bash
# Decode sweep of the fifth session (issue 12) on the H200: the e4m3 decode of the FP8 register
# tiles (bits vs ptx, CLQ_FP8_DECODE), and w4a16_gemm/nv_mma_skinny under CLQ_NV_SKINNY launch
# shapes (CFGS, e.g. "kw=4 kw=8 nt=2"). The cp.async weight ring (cpa=4/8/16) and the rotated
# warp start (rot=1) measured in that session were slower and were taken out again (RESULTS).
# Usage (device): source .gpu/gpu-env.sh && bash bench/decode_sweep.sh OUTDIR [tests]
set -u
out=${1:?outdir}
mkdir -p "$out"
export CLQ_DEVICE=${CLQ_DEVICE:-nvidia}
cq=build/tools/clquant
if [ "${2:-}" = tests2 ]; then
  build/tests/clquant_tests --gtest_filter='W4A8*:Fp8*' >"$out/tests_w4a8_fp8.txt" 2>&1
  echo "tests w4a8/fp8 rc=$?"
fi
if [ "${2:-}" = tests ]; then
  build/tests/clquant_tests --gtest_filter='W4A16*:Fp8*:MoeDecode*:GgufGemm*:W8A16*:W4A8*' >"$out/tests_default.txt" 2>&1
  echo "tests default rc=$?"
  CLQ_FP8_DECODE=bits build/tests/clquant_tests --gtest_filter='Fp8Gemm*:MoeDecode*' >"$out/tests_bits.txt" 2>&1
  echo "tests bits rc=$?"
fi
for cfg in ${CFGS:-kw=4}; do
  echo "== w4a16 nv_mma_skinny $cfg"
  CLQ_NV_SKINNY=$cfg $cq bench w4a16 --variant nv_mma_skinny --shapes 28672x8192,8192x8192 --ms 1,16 --no-baseline \
    --json-out "$out/w4a16_${cfg//[=,]/_}.json" 2>&1 | grep -E "M=|copy" | head -8
done
for dec in ${DECS:-bits ptx}; do
  echo "== fp8 decode=$dec"
  CLQ_FP8_DECODE=$dec $cq bench fp8 --shapes 7168x16384 --ms 1,16,64 --no-baseline --json-out "$out/fp8_$dec.json" 2>&1 |
    grep -E "M=|copy" | head -8
  [ -n "${NOMOE:-}" ] && continue
  echo "== moe decode=$dec"
  CLQ_FP8_DECODE=$dec $cq bench moe --ms 1 --reps 20 --breakdown --json-out "$out/moe_$dec.json" 2>&1 | tail -25
done
