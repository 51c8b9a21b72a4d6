#!/usr/bin/env bash
# Sweeps the nv_mma_tiled launch shape (CLQ_NV_TILED) on the NVIDIA machine; prints one
# `clquant bench w4a16` table per setting. Usage there:
#   source .gpu/gpu-env.sh && bash bench/sweep_nv_tiled.sh [shapes] [ms] [settings...]
set -euo pipefail
shapes=${1:-28672x8192}
ms=${2:-64,256,4096}
shift 2 || true
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=("" "wm=4,stages=2" "wm=1,stages=4" "tn=2,wn=4" "tn=2,wn=2,mbw=8" "wgs=1" "wgs=4")
export CLQ_DEVICE=${CLQ_DEVICE:-nvidia}
for s in "${settings[@]}"; do
  echo "== CLQ_NV_TILED='$s'"
  CLQ_NV_TILED="$s" build/tools/clquant bench w4a16 --variant nv_mma_tiled --shapes "$shapes" --ms "$ms" \
    --no-baseline 2>&1 | grep -E "x[0-9]+ M=|registers.*smem"
done
