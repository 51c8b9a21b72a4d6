#!/usr/bin/env bash
# `clquant inspect` and `clquant verify` over the synthetic four-layer sharded model
# (host/synth/synth_model.h): clean, with one layer's numbers broken, with one layer the loader refuses.
set -u
clq="$1"; gen="$2"
fail=0
tmp=$(mktemp -d /tmp/clq-cli-model-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
expect() {  # name want_rc needle command...
  local name=$1 want=$2 needle=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || { [ -n "$needle" ] && ! echo "$out" | grep -q -- "$needle"; }; then
    echo "FAIL $name: exit $rc (want $want), looking for '$needle':"; echo "$out" | head -20; fail=1
  else echo "ok   $name"; fi
}
d="$tmp/clean"; mkdir -p "$d"; "$gen" model "$d" || { echo "FAIL generator"; exit 1; }
expect "inspect folder" 0 "4 layers (0 refused" "$clq" inspect "$d"
for l in model.layers.0.self_attn.q_proj model.layers.1.mlp.down_proj model.layers.2.mlp.gate_proj "model.layers.3.mlp .*shared I=384"; do
  echo "$out" | grep -q "^$l" || { echo "FAIL inspect does not list $l"; fail=1; }
done
expect "inspect index json" 0 '"prefix": "model.layers.3.mlp"' "$clq" inspect "$d/model.safetensors.index.json" --json
expect "verify passes" 0 "4 layers, 0 failed" "$clq" verify "$d"
# Not a terminal: one progress line per layer on stderr, then the table.
echo "$out" | grep -q "^verify: 4/4 model.layers.3.mlp ok" || { echo "FAIL no progress lines: $out"; fail=1; }
# On a terminal (script(1) gives one): a bar redrawn in place instead of the lines.
if command -v script >/dev/null; then
  bar=$(script -qec "'$clq' verify '$d' --layers 'layers\.[01]\.'" /dev/null 2>&1)
  echo "$bar" | grep -q '\[##############################\] 2/2' && ! echo "$bar" | grep -q '^verify: ' \
    || { echo "FAIL no progress bar on a terminal: $bar"; fail=1; }
fi
expect "verify --json" 0 '"ok": true' "$clq" verify "$d" --json
json=$("$clq" verify "$d" --json 2>/dev/null)
echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"] and len(d["layers"]) == 4, d' \
  || { echo "FAIL verify --json is not the report"; fail=1; }
expect "verify --layers" 0 "1 layers, 0 failed" "$clq" verify "$d" --layers 'mlp$'
expect "verify --layers matches nothing" 4 "no layer matches" "$clq" verify "$d" --layers nope
expect "verify --layers bad regex" 4 "not a regular expression" "$clq" verify "$d" --layers '('
expect "verify --tokens 0" 2 "outside" "$clq" verify "$d" --tokens 0

d="$tmp/huge"; mkdir -p "$d"; "$gen" model "$d" huge-scale
expect "verify fails on broken numbers" 1 "FAILED: model.layers.2.mlp.gate_proj$" "$clq" verify "$d"
d="$tmp/nan"; mkdir -p "$d"; "$gen" model "$d" nan-scale
expect "verify fails on a refused layer" 1 "FAILED: model.layers.0.self_attn.q_proj$" "$clq" verify "$d"
echo "$out" | grep -q "model.layers.0.self_attn.q_proj.*FAIL .*InvalidArgument.*scales" || { echo "FAIL refusal not shown: $out"; fail=1; }
expect "inspect shows the refusal" 0 "REFUSED \[InvalidArgument\]" "$clq" inspect "$d"
expect "verify a missing checkpoint" 7 "" "$clq" verify "$tmp/none"
corpus="$(dirname "$0")/corpus/safetensors"
expect "inspect a malformed file" 4 "header" "$clq" inspect "$corpus/bad-hlen-over-limit.safetensors"
expect "verify a checkpoint without layers" 4 "holds no quantized linear layer or MoE block" "$clq" verify "$corpus/good-one.safetensors"
[ $fail = 0 ] && echo "cli model: all checks passed"
exit $fail
