#!/usr/bin/env bash
# Knob sweep of fp8 nv_wgmma_e4m3 on the GPU machine (CLQ_NV_WGMMA keys; bench/h200_wgmma_final.sh runs the tests).
# Usage: source .gpu/gpu-env.sh && KNOBS="swizzle=0 ko=1" bash bench/h200_wgmma_sweep.sh
set -u
export CLQ_DEVICE=nvidia CLQ_CACHE_DIR=$PWD/build-test-cache
O=${OUT:-/tmp/out}
mkdir -p "$O"
for k in default ${KNOBS:-}; do
  [ "$k" = default ] && kv="" || kv="$k"
  CLQ_NV_WGMMA="$kv" timeout 200 build/tools/clquant bench fp8 --shapes ${SHAPES:-7168x16384} --ms ${MS:-128,4096} \
    --variant ${VARIANT:-nv_wgmma_e4m3} --no-baseline --reps 10 > "$O/sweep_$k.txt" 2>&1
  echo "== $k rc=$?"; grep "x.*M=" "$O/sweep_$k.txt" | grep -v portable | awk '{print $1, $2, $5, $9}'
done
