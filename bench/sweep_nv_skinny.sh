#!/usr/bin/env bash
# Sweeps the nv_mma_skinny launch shape (CLQ_NV_SKINNY) on the NVIDIA machine; prints one
# `clquant bench w4a16` table per setting. Usage there:
#   source .gpu/gpu-env.sh && bash bench/sweep_nv_skinny.sh [shapes] [ms] [settings...]
set -euo pipefail
shapes=${1:-28672x8192,4096x14336}
ms=${2:-1,16}
shift 2 || true
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=("" "kw=2" "kw=8" "unroll=2" "wgs=4" "wgs=16" "nt=2")
export CLQ_DEVICE=${CLQ_DEVICE:-nvidia}
for s in "${settings[@]}"; do
  echo "== CLQ_NV_SKINNY='$s'"
  CLQ_NV_SKINNY="$s" build/tools/clquant bench w4a16 --variant nv_mma_skinny --shapes "$shapes" --ms "$ms" \
    --no-baseline | grep -E "x[0-9]+ M="
done
