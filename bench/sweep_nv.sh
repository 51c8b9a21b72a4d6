#!/usr/bin/env bash
# Sweeps the launch shape of a tensor-core W4A16 variant on the NVIDIA machine (CLQ_NV_SKINNY for
# nv_mma_skinny, CLQ_NV_TILED for nv_mma_tiled); prints one `clquant bench w4a16` table per
# setting, plus ptxas's register line when CLQ_BUILD_LOG=1 CLQ_BUILD_OPTIONS=-cl-nv-verbose. There:
#   source .gpu/gpu-env.sh && bash bench/sweep_nv.sh skinny|tiled [shapes] [ms] [settings...]
set -euo pipefail
which=${1:?skinny or tiled}
case "$which" in
  skinny) var=CLQ_NV_SKINNY; defaults=("" "kw=2" "kw=8" "unroll=2" "wgs=4" "wgs=16" "nt=2")
          shapes=${2:-28672x8192,4096x14336}; ms=${3:-1,16} ;;
  tiled)  var=CLQ_NV_TILED; defaults=("" "mbw=4" "mbw=8" "wm=1" "tn=2,wn=2,mbw=8" "stages=2" "wgs=1" "wgs=4")
          shapes=${2:-28672x8192}; ms=${3:-64,256,4096} ;;
  *) echo "sweep_nv.sh: first argument must be skinny or tiled, not '$which'" >&2; exit 2 ;;
esac
shift $(( $# < 3 ? $# : 3 ))
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=("${defaults[@]}")
export CLQ_DEVICE=${CLQ_DEVICE:-nvidia}
for s in "${settings[@]}"; do
  echo "== $var='$s'"
  env "$var=$s" build/tools/clquant bench w4a16 --variant "nv_mma_$which" --shapes "$shapes" --ms "$ms" \
    --no-baseline 2>&1 | grep -E "^[0-9]+x[0-9]+ M=|registers.*smem"
done
