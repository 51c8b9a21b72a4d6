#!/usr/bin/env bash
# Online quantization through the command line: `clquant quantize` on dense checkpoints written by
# the test-data generator, read back by `clquant gemm --check` and `clquant inspect`; `gemm
# --quantize`; sharded output (--max-shard-size) and what --force replaces and removes; and the
# refusals (an existing or input output, bad method / group size / layers / shard size).
set -u
clq="$1"; gen="$2"
fail=0
tmp=$(mktemp -d /tmp/clq-cli-quantize-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
expect() {  # name want_rc needle command...
  local name=$1 want=$2 needle=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || { [ -n "$needle" ] && ! echo "$out" | grep -q -- "$needle"; }; then
    echo "FAIL $name: exit $rc (want $want), looking for '$needle':"; echo "$out" | head -20; fail=1
  else echo "ok   $name"; fi
}
P=model.layers.0.mlp.down_proj
Q=model.layers.0.self_attn.q_proj
in="$tmp/dense"; mkdir -p "$in"
"$gen" "$in" dense 512 264 0 0 3 bf16 5 || { echo "FAIL generator"; exit 1; }
sum_before=$(cat "$in"/* | md5sum)
# method, extra flags, what inspect must say about each layer
while IFS='|' read -r name flags want; do
  dst="$tmp/out-$name"  # not $out: expect() sets that
  expect "quantize $name" 0 "overall (2 layers)" "$clq" quantize "$in" "$dst" $flags
  [ -s "$dst/model.safetensors" ] && [ -s "$dst/config.json" ] || { echo "FAIL $name: no output files"; fail=1; continue; }
  expect "inspect $name" 0 "$P .*$want" "$clq" inspect "$dst"
  expect "inspect $name q_proj" 0 "$Q .*$want" "$clq" inspect "$dst"
  expect "inspect $name lm_head not a layer" 0 "2 layers (0 refused" "$clq" inspect "$dst"
  expect "verify $name" 0 "2 layers, 0 failed" "$clq" verify "$dst"
  expect "gemm $name" 0 "check: .*PASS" "$clq" gemm --weights "$dst" --prefix $P --input "$in/input.safetensors" --output "$dst/y.safetensors" --check
  expect "gemm $name tiled" 0 "check: .*PASS" "$clq" gemm --weights "$dst/model.safetensors" --prefix $Q --input "$in/input.safetensors" --output "$dst/y2.safetensors" --variant tiled --check
done <<'CASES'
int4|--method int4|compressed-tensors (from .*config.json), group 128
int4-asym-g64|--method int4 --asym --group-size 64|compressed-tensors (from .*config.json), group 64
int4-channel|--method int4 --group-size -1|compressed-tensors (from .*config.json), group -1
int8|--method int8|compressed-tensors int8 (from .*config.json), group 128
int8-asym-channel|--method int8 --asym --group-size -1|compressed-tensors int8 (from .*config.json), group -1
fp8|--method fp8-block|fp8 e4m3 128x128 block scales
CASES
grep -q '"quant_method": "compressed-tensors"' "$tmp/out-int4/config.json" || { echo "FAIL int4 config"; fail=1; }
grep -q '"weight_block_size"' "$tmp/out-fp8/config.json" || { echo "FAIL fp8 config"; fail=1; }
grep -q '"model_type": "llama"' "$tmp/out-fp8/config.json" || { echo "FAIL the input config was not carried over"; fail=1; }
# The written file's tensors: non-quantized ones copied, quantized ones in their format.
expect "json report" 0 '"rel_fro_error"' "$clq" quantize "$in" "$tmp/out-json" --method int8 --json
expect "fp16 input, --layers" 0 "overall (1 layers)" "$clq" quantize "$in" "$tmp/out-layers" --method int4 --layers 'mlp\.down'
expect "--layers keeps q_proj dense" 0 "1 layers (" "$clq" inspect "$tmp/out-layers"
# A sharded input (model.safetensors.index.json over two shards) gives the same tensors.
sh="$tmp/sharded"; mkdir -p "$sh"; cp "$in/config.json" "$sh/"
python3 - "$in/model.safetensors" "$sh" <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
b = open(src, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); data = b[8 + n:]
names = sorted(k for k in h if k != '__metadata__')
shards = {'model-00001-of-00002.safetensors': names[::2], 'model-00002-of-00002.safetensors': names[1::2]}
weight_map = {}
for fname, keys in shards.items():
    hdr, blob, off = {}, b'', 0
    for k in keys:
        t = h[k]; s, e = t['data_offsets']
        hdr[k] = {'dtype': t['dtype'], 'shape': t['shape'], 'data_offsets': [off, off + e - s]}
        blob += data[s:e]; off += e - s; weight_map[k] = fname
    j = json.dumps(hdr).encode(); j += b' ' * (-len(j) % 8)
    open(f'{dst}/{fname}', 'wb').write(struct.pack('<Q', len(j)) + j + blob)
json.dump({'metadata': {}, 'weight_map': weight_map}, open(f'{dst}/model.safetensors.index.json', 'w'))
PY
expect "quantize sharded" 0 "overall (2 layers)" "$clq" quantize "$sh/model.safetensors.index.json" "$tmp/out-sharded" --method int4
cmp -s "$tmp/out-sharded/model.safetensors" "$tmp/out-int4-asym-g64/model.safetensors" && { echo "FAIL different specs gave the same file"; fail=1; }
"$clq" quantize "$in" "$tmp/out-int4-again" --method int4 >/dev/null 2>&1
if cmp -s "$tmp/out-sharded/model.safetensors" "$tmp/out-int4-again/model.safetensors"; then echo "ok   sharded input gives the single file's output"
else echo "FAIL sharded input differs from the single file's"; fail=1; fi
expect "sharded: OUT over a shard's folder" 4 "input checkpoint's folder" "$clq" quantize "$sh" "$sh" --method int4 --force
# Sharded output (--max-shard-size): shards named model-0000i-of-0000N.safetensors and an index
# whose weight_map names every tensor, each tensor's bytes those of the single-file output, no
# shard past the limit unless it holds one tensor alone; read back by inspect, verify and gemm.
check_shards() {  # name dir max_bytes: the folder against out-int4-again's single file
  python3 - "$2" "$3" "$tmp/out-int4-again/model.safetensors" <<'PY' || { echo "FAIL $1: shards"; fail=1; }
import json, os, re, struct, sys
d, limit, single = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def tensors(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}
idx = json.load(open(f'{d}/model.safetensors.index.json'))
files = sorted(f for f in os.listdir(d) if re.fullmatch(r'model-\d{5}-of-\d{5}\.safetensors', f))
assert not os.path.exists(f'{d}/model.safetensors'), 'model.safetensors beside the index'
assert len(files) > 1 and files == sorted(set(idx['weight_map'].values())), (files, set(idx['weight_map'].values()))
assert all(f.endswith(f'-of-{len(files):05d}.safetensors') for f in files), files
got = {}
for f in files:
    t = tensors(f'{d}/{f}')
    assert len(t) == 1 or sum(map(len, t.values())) <= limit, (f, sum(map(len, t.values())))
    assert all(idx['weight_map'][k] == f for k in t), f
    got.update(t)
assert idx['metadata']['total_size'] == sum(map(len, got.values()))
assert got == tensors(single), 'the shards do not hold the single file\'s tensors'
PY
}
sd="$tmp/out-shards"
expect "quantize --max-shard-size 100KB" 0 "shards, [0-9]* tensor bytes) and" "$clq" quantize "$in" "$sd" --method int4 --max-shard-size 100KB
check_shards "100KB" "$sd" 100000
n100=$(ls "$sd" | grep -c '^model-.*-of-.*\.safetensors$')
expect "inspect sharded output" 0 "$P .*compressed-tensors (from .*config.json), group 128" "$clq" inspect "$sd"
expect "verify sharded output" 0 "2 layers, 0 failed" "$clq" verify "$sd"
expect "gemm on sharded output" 0 "check: .*PASS" "$clq" gemm --weights "$sd/model.safetensors.index.json" --prefix $Q --input "$in/input.safetensors" --output "$tmp/y-shards.safetensors" --check
expect "sharded OUT exists, no --force" 4 "is not empty" "$clq" quantize "$in" "$sd" --method int4 --max-shard-size 100KB
check_shards "refused run left the shards alone" "$sd" 100000
# --force with a larger limit: fewer shards, the earlier ones the new set does not name removed;
# then one file: every shard and the index removed. A file that is not weights stays.
echo "not ours" > "$sd/README.md"
expect "--force to fewer shards" 0 "removed the earlier model-" "$clq" quantize "$in" "$sd" --method int4 --max-shard-size 200KiB --force
check_shards "200KiB" "$sd" 204800
n200=$(ls "$sd" | grep -c '^model-.*-of-.*\.safetensors$')
[ "$n200" -lt "$n100" ] || { echo "FAIL 200KiB gave $n200 shards, 100KB $n100"; fail=1; }
expect "--force to one file" 0 "removed the earlier.*model.safetensors.index.json" "$clq" quantize "$in" "$sd" --method int4 --force
[ -s "$sd/model.safetensors" ] && [ ! -e "$sd/model.safetensors.index.json" ] && ! ls "$sd" | grep -q '^model-' ||
  { echo "FAIL --force to one file left shards or the index:"; ls "$sd"; fail=1; }
cmp -s "$sd/model.safetensors" "$tmp/out-int4-again/model.safetensors" || { echo "FAIL one-file --force output differs"; fail=1; }
[ "$(cat "$sd/README.md" 2>/dev/null)" = "not ours" ] || { echo "FAIL --force removed a file that is not weights"; fail=1; }
# Bad sizes are refused by the parser, before anything is read or made.
expect "shard size 0" 2 "'0' must be at least 1 byte" "$clq" quantize "$in" "$tmp/s1" --method int4 --max-shard-size 0
expect "shard size unknown unit" 2 "^--max-shard-size: '5XB' has an unknown unit 'XB': a whole number of bytes" "$clq" quantize "$in" "$tmp/s2" --method int4 --max-shard-size 5XB
[ "$(echo "$out" | grep -o -- '--max-shard-size' | wc -l)" = 1 ] && [ "$(echo "$out" | grep -o 'a whole number' | wc -l)" = 1 ] ||
  { echo "FAIL the size message names the option or the rule more than once: $out"; fail=1; }
expect "shard size fraction" 2 "'1.5GB' has an unknown unit '.5GB'" "$clq" quantize "$in" "$tmp/s3" --method int4 --max-shard-size 1.5GB
expect "shard size negative" 2 "'-1' is not a size" "$clq" quantize "$in" "$tmp/s4" --method int4 --max-shard-size -1
expect "shard size past 2^64" 2 "larger than 2^64 - 1 bytes" "$clq" quantize "$in" "$tmp/s5" --method int4 --max-shard-size 20000000000TB
for o in s1 s2 s3 s4 s5; do [ -e "$tmp/$o" ] && { echo "FAIL refused run left $o behind"; fail=1; }; done
# Online quantization inside gemm, each method, against the fp64 reference on the quantized weights.
for m in int4 int8 fp8-block; do
  expect "gemm --quantize $m" 0 "check: .*PASS" "$clq" gemm --weights "$in" --prefix $P --input "$in/input.safetensors" --output "$tmp/yq-$m.safetensors" --quantize $m --check
done
expect "gemm --quantize prints the error" 0 "rel error" "$clq" gemm --weights "$in" --prefix $P --input "$in/input.safetensors" --output "$tmp/yq-a.safetensors" --quantize int4 --asym --group-size 32 --check
expect "gemm --quantize int4 W4A8" 0 "w4a8_gemm/emulated" "$clq" gemm --weights "$in" --prefix $P --input "$in/input.safetensors" --output "$tmp/yq-w4a8.safetensors" --quantize int4 --act-dtype fp8 --check
expect "gemm --quantize on a quantized layer" 4 "already quantized" "$clq" gemm --weights "$tmp/out-int4" --prefix $P --input "$in/input.safetensors" --output "$tmp/yq-x.safetensors" --quantize int4
expect "gemm --asym without --quantize" 4 "--asym applies with --quantize" "$clq" gemm --weights "$tmp/out-int4" --prefix $P --input "$in/input.safetensors" --output "$tmp/yq-y.safetensors" --asym
# MoE blocks: dense routed and shared experts quantized at load, against the reference on the
# quantized experts (int8: the W8A16 int8 experts).
moe="$tmp/moe"; mkdir -p "$moe"; "$gen" "$moe" moe_dense+ds 256 128 8 0 5 bf16 3
M=model.layers.3.mlp
expect "moe --quantize int4" 0 "check: .*PASS" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/y4.safetensors" --top-k 2 --check --quantize int4
expect "moe --quantize int4 asym g64" 0 "int4 experts.*shared experts I=256 int4" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/y4a.safetensors" --top-k 2 --check --quantize int4 --asym --group-size 64
expect "moe --quantize fp8-block" 0 "check: .*PASS" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/y8.safetensors" --top-k 2 --renormalize --check --quantize fp8-block --variant general
expect "moe --quantize int8" 0 "check: .*PASS" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/yi8.safetensors" --top-k 2 --check --quantize int8
expect "moe --quantize int8 asym g64" 0 "int8 experts.*shared experts I=256 int8" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/yi8a.safetensors" --top-k 2 --check --quantize int8 --asym --group-size 64
expect "moe --quantize int9" 2 "int9" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/yx.safetensors" --top-k 2 --quantize int9
expect "moe --quantize output over the input" 4 "" "$clq" moe --weights "$moe" --prefix $M --input "$moe/input.safetensors" --output "$moe/input.safetensors" --top-k 2 --quantize int4
# Refusals: nothing is ever written over an input or an existing folder's files without --force.
expect "OUT exists, not empty" 4 "is not empty" "$clq" quantize "$in" "$tmp/out-int4" --method int4
expect "OUT is IN's folder" 4 "input checkpoint's folder" "$clq" quantize "$in" "$in" --method int4 --force
expect "OUT is IN's file" 4 "is not a folder" "$clq" quantize "$in" "$in/model.safetensors" --method int4
ln -s "$tmp/out-int4" "$tmp/link"
expect "OUT is a symbolic link" 4 "symbolic link" "$clq" quantize "$in" "$tmp/link" --method int4
expect "--force replaces" 0 "overall" "$clq" quantize "$in" "$tmp/out-int4" --method int8 --force
grep -q '"num_bits": 8' "$tmp/out-int4/config.json" || { echo "FAIL --force did not replace config.json"; fail=1; }
# Temporaries a crashed run left (.clq-XXXXXXXX.tmp, regular files) keep OUT non-empty, and go
# with --force; a name of another shape, a symbolic link and a hard link to an input stay.
st="$tmp/out-stale"; mkdir -p "$st"
echo crashed > "$st/.clq-0123abcd.tmp"
echo crashed > "$st/.clq-89ef4567.tmp"
echo mine > "$st/.clq-notours.tmp"
ln -s "$in/model.safetensors" "$st/.clq-0badf00d.tmp"
ln "$in/config.json" "$st/.clq-fedcba98.tmp"
expect "stale temporaries, no --force" 4 "is not empty (it holds '.clq-" "$clq" quantize "$in" "$st" --method int4
[ -e "$st/.clq-0123abcd.tmp" ] || { echo "FAIL a refused run removed a temporary"; fail=1; }
expect "--force removes stale temporaries" 0 "removed the earlier .clq-0123abcd.tmp .clq-89ef4567.tmp" "$clq" quantize "$in" "$st" --method int4 --force
[ -e "$st/.clq-0123abcd.tmp" ] || [ -e "$st/.clq-89ef4567.tmp" ] && { echo "FAIL --force left a stale temporary"; fail=1; }
[ "$(cat "$st/.clq-notours.tmp")" = mine ] || { echo "FAIL --force removed .clq-notours.tmp"; fail=1; }
[ -L "$st/.clq-0badf00d.tmp" ] || { echo "FAIL --force removed a symbolic link"; fail=1; }
[ -e "$st/.clq-fedcba98.tmp" ] || { echo "FAIL --force removed a hard link to an input"; fail=1; }
ls -a "$st" | grep -E '^\.clq-[0-9a-f]{8}\.tmp$' | grep -qvE '0badf00d|fedcba98' && { echo "FAIL a temporary of this run is left:"; ls -a "$st"; fail=1; }
mkdir -p "$tmp/empty"
expect "OUT empty folder" 0 "overall" "$clq" quantize "$in/model.safetensors" "$tmp/empty" --method fp8-block
expect "already quantized input" 4 "already quantized" "$clq" quantize "$tmp/out-fp8" "$tmp/out-again" --method int4
[ -e "$tmp/out-again" ] && { echo "FAIL a refused run created its output folder"; fail=1; }
expect "bad method" 2 "int3" "$clq" quantize "$in" "$tmp/o1" --method int3
expect "bad group size 0" 2 "'0' is outside" "$clq" quantize "$in" "$tmp/o2" --method int4 --group-size 0
expect "bad group size text" 2 "'x' is not an integer" "$clq" quantize "$in" "$tmp/o2" --method int4 --group-size x
expect "group size not dividing K" 4 "not a multiple of group size 96" "$clq" quantize "$in" "$tmp/o3" --method int4 --group-size 96
expect "group size with fp8-block" 4 "fp8-block has fixed 128 x 128 blocks" "$clq" quantize "$in" "$tmp/o4" --method fp8-block --group-size 64
expect "--asym with fp8-block" 4 "fp8-block quantization is symmetric" "$clq" quantize "$in" "$tmp/o5" --method fp8-block --asym
expect "--sym and --asym" 2 "excludes" "$clq" quantize "$in" "$tmp/o6" --method int4 --sym --asym
expect "bad regex" 4 "not a valid regular expression" "$clq" quantize "$in" "$tmp/o7" --method int4 --layers '('
expect "no layer selected" 4 "no layer of" "$clq" quantize "$in" "$tmp/o8" --method int4 --layers 'nothing_matches'
odd="$tmp/odd"; mkdir -p "$odd"; "$gen" "$odd" dense 512 260 0 0 2 bf16 8
expect "N not a multiple of 8" 4 "\[260, 512\]; int4 pack-quantized needs N and K multiples of 8" "$clq" quantize "$odd" "$tmp/o9" --method int4
expect "N = 260 is fine for int8" 0 "overall (2 layers)" "$clq" quantize "$odd" "$tmp/odd-int8" --method int8
for o in o1 o2 o3 o4 o5 o6 o7 o8 o9; do [ -e "$tmp/$o" ] && { echo "FAIL refused run left $o behind"; fail=1; }; done
# Non-finite weights are refused, naming the element.
nan="$tmp/nan"; mkdir -p "$nan"; "$gen" "$nan" dense 256 136 0 0 2 f16 6
python3 - "$nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); t = h['model.layers.0.mlp.down_proj.weight']
at = 8 + n + t['data_offsets'][0] + 2 * (3 * 256 + 10)
b[at:at + 2] = struct.pack('<H', 0x7E00)  # fp16 NaN at [3][10]
open(p, 'wb').write(b)
PY
expect "NaN weight" 4 "down_proj.weight'\[3\]\[10\] is nan" "$clq" quantize "$nan" "$tmp/o10" --method int8
[ "$(cat "$in"/* | md5sum)" = "$sum_before" ] || { echo "FAIL the input checkpoint changed"; fail=1; }
exit $fail
