#!/usr/bin/env bash
# Hostile input through the command line (issue 16): special files never block, an output never
# replaces an input, a link or a device, bad numbers and selectors get their exit code and a
# message, and every corpus file is refused with exit 4 within seconds.
set -u
clq="$1"; gen="$2"; corpus="$3"
fail=0
tmp=$(mktemp -d /tmp/clq-cli-hostile-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
expect() {  # name want_rc needle command...  (60 s limit: a hang is a failure, exit 124)
  local name=$1 want=$2 needle=$3; shift 3
  out=$(timeout 60 "$@" 2>&1 </dev/null); rc=$?
  if [ "$rc" != "$want" ] || { [ -n "$needle" ] && ! echo "$out" | grep -q -- "$needle"; }; then
    echo "FAIL $name: exit $rc (want $want), looking for '$needle':"; echo "$out" | head -20; fail=1
  else echo "ok   $name"; fi
}
P=model.layers.0.mlp.down_proj
d="$tmp/ck"; mkdir -p "$d"
"$gen" "$d" gptq 256 64 64 0 3 f16 5 || { echo "FAIL generator"; exit 1; }
W="$d/model.safetensors"; X="$d/input.safetensors"
cp "$W" "$tmp/w.orig"; cp "$X" "$tmp/x.orig"
run=("$clq" gemm --weights "$W" --prefix $P --input "$X")
gemm_w=("$clq" gemm --weights "$W" --prefix $P)

# Outputs that would destroy something.
expect "output = weights" 4 "same file as an input" "${run[@]}" --output "$W"
expect "output = input" 4 "same file as an input" "${run[@]}" --output "$X"
ln "$W" "$tmp/hardlink"
expect "output = hard link of the weights" 4 "same file as an input" "${run[@]}" --output "$tmp/hardlink"
expect "output = quantize_config.json" 4 "same file as an input" "${run[@]}" --output "$d/quantize_config.json"
ln -s "$tmp/elsewhere" "$tmp/link"
expect "output is a symlink" 4 "symbolic link" "${run[@]}" --output "$tmp/link"
[ -L "$tmp/link" ] || { echo "FAIL the symlink was replaced"; fail=1; }
expect "output is a device" 4 "character device" "${run[@]}" --output /dev/null
mkfifo "$tmp/outfifo"
expect "output is a FIFO" 4 "FIFO" "${run[@]}" --output "$tmp/outfifo"
expect "output is a folder" 4 "folder" "${run[@]}" --output "$tmp"
cmp -s "$W" "$tmp/w.orig" && cmp -s "$X" "$tmp/x.orig" || { echo "FAIL an input changed"; fail=1; }
long="$tmp/$(printf 'o%.0s' $(seq 1 238)).safetensors"
expect "250-byte output name" 0 "" "${run[@]}" --output "$long"
[ -s "$long" ] || { echo "FAIL no output under the long name"; fail=1; }
ls -a "$tmp" | grep -q '\.clq-' && { echo "FAIL a temporary file was left behind"; fail=1; }
expect "quant-fp8 output = input" 4 "same file as an input" "$clq" quant-fp8 --input "$X" --output "$X"

# Special files as inputs: refused at once, never waited on.
mkfifo "$tmp/fifo"
expect "FIFO as --weights" 7 "not a regular file" "$clq" gemm --weights "$tmp/fifo" --prefix $P --input "$X" --output "$tmp/y.safetensors"
expect "FIFO as --input" 7 "not a regular file" "${gemm_w[@]}" --output "$tmp/y.safetensors" --input "$tmp/fifo"
expect "device as --input" 7 "not a regular file" "${gemm_w[@]}" --output "$tmp/y.safetensors" --input /dev/zero
s="$tmp/shard"; mkdir -p "$s"; mkfifo "$s/model-00001.safetensors"
echo '{"weight_map":{"'$P'.qweight":"model-00001.safetensors"}}' > "$s/model.safetensors.index.json"
expect "FIFO as a shard" 7 "not a regular file" "$clq" gemm --weights "$s" --prefix $P --input "$X" --output "$tmp/y.safetensors"
q="$tmp/qc"; mkdir -p "$q"; cp "$W" "$q/"; mkfifo "$q/quantize_config.json"
expect "FIFO as quantize_config.json" 7 "not a regular file" "$clq" gemm --weights "$q" --prefix $P --input "$X" --output "$tmp/y.safetensors"
[ -e "$tmp/y.safetensors" ] && { echo "FAIL a refused run wrote an output"; fail=1; }

# Config fields of the wrong type name the field.
c="$tmp/cfg"; mkdir -p "$c"; cp "$W" "$c/"
echo '{"bits":4,"group_size":"64","desc_act":false}' > "$c/quantize_config.json"
expect "group_size as a string" 4 "group_size is a string" "$clq" gemm --weights "$c" --prefix $P --input "$X" --output "$tmp/y.safetensors"
echo '{"bits":4,"group_size":64.5}' > "$c/quantize_config.json"
expect "group_size 64.5" 4 "group_size is a number with a fraction" "$clq" gemm --weights "$c" --prefix $P --input "$X" --output "$tmp/y.safetensors"

# Numbers and selectors typed by a user.
expect "--seed -1" 2 "not a non-negative integer" "$clq" demo --seed -1
expect "--reps -5" 2 "outside" "$clq" bench w4a16 --reps -5
expect "--group-size ''" 2 "not an integer" "${run[@]}" --output "$tmp/y.safetensors" --group-size ''
expect "--group-size 0" 2 "outside" "${run[@]}" --output "$tmp/y.safetensors" --group-size 0
expect "--top-k -2" 2 "outside" "$clq" moe --weights "$W" --prefix p --input "$X" --output "$tmp/y.safetensors" --top-k -2
expect "--routed-scaling nan" 2 "finite positive" "$clq" moe --weights "$W" --prefix p --input "$X" --output "$tmp/y.safetensors" --top-k 2 --routed-scaling nan
expect "CLQ_VARIANT='===,,,'" 4 "CLQ_VARIANT" env CLQ_VARIANT='===,,,' "$clq" gemm --weights "$W" --prefix $P --input "$X" --output "$tmp/y.safetensors"
expect "CLQ_VARIANT unknown op" 4 "unknown op 'w4a16_gem'" env CLQ_VARIANT='w4a16_gem=tiled' "$clq" gemm --weights "$W" --prefix $P --input "$X" --output "$tmp/y.safetensors"
expect "bench shape too large" 4 "above what this device can hold" "$clq" bench w4a16 --shapes 4194304x4194304 --ms 1 --no-baseline
expect "bench shape not NxK" 4 "not a positive integer" "$clq" bench w4a16 --shapes 4096x4096x2 --ms 1 --no-baseline
[ -e "$tmp/y.safetensors" ] && { echo "FAIL a refused run wrote an output"; fail=1; }

# Every malformed file of the corpus, as weights and as input: exit 4.
n=0
for f in "$corpus"/bad-*.safetensors; do
  expect "corpus $(basename "$f") as --weights" 4 "FormatError" "$clq" gemm --weights "$f" --prefix $P --input "$X" --output "$tmp/y.safetensors"
  n=$((n + 1))
done
expect "corpus file as --input" 4 "FormatError" "${gemm_w[@]}" --output "$tmp/y.safetensors" --input "$corpus/bad-deep-shape.safetensors"
[ "$n" -ge 40 ] || { echo "FAIL only $n corpus files"; fail=1; }
if [ $fail -ne 0 ]; then echo "cli hostile: FAILED"; exit 1; fi
echo "cli hostile: all checks passed"
