#!/usr/bin/env bash
# Round trips through `clquant gemm` with files written by the test-data generator.
set -u
clq="$1"; gen="$2"
fail=0
tmp=$(mktemp -d /tmp/clq-cli-gemm-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
expect() {  # name want_rc needle command...
  local name=$1 want=$2 needle=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ] || { [ -n "$needle" ] && ! echo "$out" | grep -q -- "$needle"; }; then
    echo "FAIL $name: exit $rc (want $want), looking for '$needle':"; echo "$out" | head -20; fail=1
  else echo "ok   $name"; fi
}
P=model.layers.0.mlp.down_proj
for spec in "compressed-tensors 512 264 128 1 3 bf16" "compressed-tensors 256 128 -1 0 5 f16" "gptq 512 264 128 1 3 f16" "gptq_v2 256 128 64 0 17 bf16" "awq 256 136 32 0 2 f16" "gptq 4104 576 128 1 1 bf16"; do
  set -- $spec
  d="$tmp/$1-$2-$3"; mkdir -p "$d"
  "$gen" "$d" "$1" "$2" "$3" "$4" "$5" "$6" "$7" 11 || { echo "FAIL generator"; fail=1; continue; }
  expect "gemm $spec" 0 "check: .*PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
  [ -s "$d/y.safetensors" ] || { echo "FAIL $spec: no output file"; fail=1; }
  expect "gemm $spec tiled" 0 "variant tiled" "$clq" gemm --weights "$d/model.safetensors" --prefix $P --input "$d/input.safetensors" --output "$d/y2.safetensors" --variant tiled --check
done
# compressed-tensors FP8: channel scales [N, 1] (dynamic and static activations), block scales
# under the name weight_scale.
for f in fp8_channel fp8_channel_static fp8_ct_block; do
  d="$tmp/$f"; mkdir -p "$d"; "$gen" "$d" $f 300 136 0 0 5 bf16 3 || { echo "FAIL generator $f"; fail=1; continue; }
  want="per-channel"; [ $f = fp8_ct_block ] && want="128x128 block"
  expect "gemm $f" 0 "$want" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
  expect "gemm $f tiled" 0 "check: .*PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y2.safetensors" --variant tiled --check
done
# W4A8: int4 weights with e4m3 activations per token (--act-dtype fp8), over two int4 variants.
d="$tmp/w4a8"; mkdir -p "$d"; "$gen" "$d" gptq 512 264 128 1 5 bf16 21
expect "w4a8 gemm" 0 "w4a8_gemm/emulated over w4a16_gemm" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --act-dtype fp8 --check
expect "w4a8 gemm tiled" 0 "over w4a16_gemm/tiled" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y2.safetensors" --act-dtype fp8 --variant tiled --check
expect "w4a8 differs from w4a16" 0 "PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y3.safetensors" --check
if cmp -s "$d/y.safetensors" "$d/y3.safetensors"; then echo "FAIL W4A8 and W4A16 outputs identical"; fail=1; else echo "ok   w4a8 output is not w4a16's"; fi
# DeepSeek-V3.1 scale_fmt ue8m0: activation scales rounded up to powers of two, from config.json.
d="$tmp/fp8-ue8m0"; mkdir -p "$d"; "$gen" "$d" fp8_block 384 256 0 0 3 bf16 4
printf '{"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128], "scale_fmt": "ue8m0"}}' > "$d/config.json"
expect "fp8 scale_fmt ue8m0" 0 "ue8m0 activation scales" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
printf '{"quantization_config": {"quant_method": "fp8", "scale_fmt": "e5m2"}}' > "$d/config.json"
expect "fp8 unknown scale_fmt" 5 "scale_fmt 'e5m2'" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y2.safetensors"
# GGUF layers (the tensor is PREFIX.weight), every block type, both variants; the input must
# still be safetensors, and a GGUF file given there is named as one. None writes over the model.
for ty in q4_0 q8_0 q4_k q6_k; do
  d="$tmp/gguf-$ty"; mkdir -p "$d"
  "$gen" "$d" gguf_$ty 512 72 0 0 9 bf16 13 || { echo "FAIL generator gguf $ty"; fail=1; continue; }
  for v in gemv tiled; do
    want="gguf_gemm/$v"; [ $ty = q4_0 ] && want="w4a16_gemm/$v (Q4_0 repacked"
    expect "gguf $ty $v" 0 "$want" "$clq" gemm --weights "$d/model.gguf" --prefix blk.0.ffn_down --input "$d/input.safetensors" --output "$d/y_$v.safetensors" --variant $v --check
  done
done
d="$tmp/gguf-q4_0"
expect "gguf as --input" 4 "is a GGUF file" "$clq" gemm --weights "$d/model.gguf" --prefix blk.0.ffn_down --input "$d/model.gguf" --output "$d/y3.safetensors"
expect "gguf output over the model" 4 "" "$clq" gemm --weights "$d/model.gguf" --prefix blk.0.ffn_down --input "$d/input.safetensors" --output "$d/model.gguf"
head -c 4 "$d/model.gguf" | grep -q GGUF || { echo "FAIL the model file was overwritten"; fail=1; }
expect "gguf wrong prefix" 4 "no tensor 'blk.9.ffn_down.weight'" "$clq" gemm --weights "$d/model.gguf" --prefix blk.9.ffn_down --input "$d/input.safetensors" --output "$d/y4.safetensors"
expect "gguf with --format" 4 "is a GGUF file" "$clq" gemm --weights "$d/model.gguf" --prefix blk.0.ffn_down --input "$d/input.safetensors" --output "$d/y4.safetensors" --format gptq
expect "gguf inspect" 0 "gguf Q4_0" "$clq" inspect "$d/model.gguf"
expect "gguf verify" 0 "1 layers, 0 failed" "$clq" verify "$tmp/gguf-q6_k/model.gguf"
expect "gguf moe refused" 5 "GGUF" "$clq" moe --weights "$d/model.gguf" --prefix blk.0 --input "$d/input.safetensors" --output "$d/y5.safetensors" --top-k 2
# W8A16 int8: GPTQ 8-bit v1/v2 (act-order, groups), compressed-tensors pack-quantized and
# int-quantized (per channel), on the default and the tiled variant.
for spec in "gptq:8 512 264 128 1 3 f16" "gptq_v2:8 260 76 32 1 17 bf16" "compressed-tensors:8 256 132 -1 0 5 bf16" "int-quantized 300 64 -1 0 1 f16"; do
  set -- $spec
  d="$tmp/int8-$1-$2-$3"; mkdir -p "$d"
  "$gen" "$d" "$1" "$2" "$3" "$4" "$5" "$6" "$7" 13 || { echo "FAIL generator $spec"; fail=1; continue; }
  expect "gemm $spec" 0 "check: .*PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
  expect "gemm $spec tiled" 0 "w8a16_int8_gemm variant tiled" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y2.safetensors" --variant tiled --check
done
# W8A8 int8 (per-token int8 activations): exact against the host twin; other tools refuse it.
d="$tmp/w8a8"; mkdir -p "$d"; "$gen" "$d" w8a8-int 300 72 -1 0 17 bf16 13
expect "gemm w8a8 int8" 0 "0 of 1224 outputs differ.*PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
# A GPTQ 8-bit file without its config reads as 4-bit and is refused (its qzeros pack 4, not 8);
# --bits 8 names the width.
d="$tmp/noconf-gptq8"; mkdir -p "$d"; "$gen" "$d" gptq_v2:8 256 64 64 0 4 f16 5 noconfig
expect "gptq 8-bit with --bits 8" 0 "w8a16_int8_gemm" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --format gptq_v2 --bits 8 --check
expect "gptq 8-bit read as 4-bit is refused" 4 "qzeros .* disagrees" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y4.safetensors" --format gptq_v2
[ -e "$d/y4.safetensors" ] && { echo "FAIL refused run wrote an output"; fail=1; }
# Format from shapes: AWQ is unambiguous, GPTQ v1/v2 is not and must be named.
d="$tmp/noconf-awq"; mkdir -p "$d"; "$gen" "$d" awq 256 64 64 0 4 f16 5 noconfig
expect "awq from shapes" 0 "from shapes" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
d="$tmp/noconf-gptq"; mkdir -p "$d"; "$gen" "$d" gptq_v2 256 64 64 0 4 f16 5 noconfig
expect "gptq without config is refused" 4 "gptq_v2" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors"
[ -e "$d/y.safetensors" ] && { echo "FAIL refused run wrote an output"; fail=1; }
expect "gptq with --format" 0 "PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --format gptq_v2 --check
# The same tensors read as v1 differ by one zero point, so the outputs must differ: the format
# decides the numbers, and nothing in the tensors can tell (hence no guessing).
expect "gptq (v1) reading" 0 "PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y3.safetensors" --format gptq --check
if cmp -s "$d/y.safetensors" "$d/y3.safetensors"; then echo "FAIL v1 and v2 readings gave identical outputs"; fail=1; else echo "ok   v1 and v2 readings differ"; fi
# Bad inputs: wrong K, wrong prefix, bad format name, broken file; none writes an output.
d2="$tmp/badk"; mkdir -p "$d2"; "$gen" "$d2" gptq 128 64 64 0 2 f16 5
expect "input K mismatch" 4 "must be \[M, K\]" "$clq" gemm --weights "$d" --prefix $P --input "$d2/input.safetensors" --output "$d2/y.safetensors" --format gptq
expect "missing prefix" 4 "qweight" "$clq" gemm --weights "$d" --prefix nope --input "$d/input.safetensors" --output "$d2/y.safetensors" --format gptq
expect "bad --format" 4 "not one of" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d2/y.safetensors" --format int4
printf 'garbage' > "$tmp/broken.safetensors"
expect "broken weights file" 4 "shorter than" "$clq" gemm --weights "$tmp/broken.safetensors" --prefix $P --input "$d/input.safetensors" --output "$d2/y.safetensors"
[ -e "$d2/y.safetensors" ] && { echo "FAIL a refused run wrote an output"; fail=1; }
# FP8: block W8A8, weight-only through --act-dtype, per-tensor with a static input_scale.
d="$tmp/fp8b"; mkdir -p "$d"; "$gen" "$d" fp8_block 300 200 0 0 3 bf16 9
expect "fp8 block w8a8" 0 "per-token-group dynamic.*" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
expect "fp8 block check passes" 0 "check: .*PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
expect "fp8 weight-only" 0 "weight-only" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y2.safetensors" --act-dtype fp16 --check
expect "fp8 tiled" 0 "PASS" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y3.safetensors" --variant tiled --check
expect "--format on fp8 is refused" 4 "FP8 layer" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y4.safetensors" --format gptq
d="$tmp/fp8t"; mkdir -p "$d"; "$gen" "$d" fp8_tensor 256 136 0 0 5 f16 9
expect "fp8 per-tensor static" 0 "per-tensor static" "$clq" gemm --weights "$d" --prefix $P --input "$d/input.safetensors" --output "$d/y.safetensors" --check
# quant-fp8 against the host quantizer, per group and per tensor.
expect "quant-fp8" 0 "" "$clq" quant-fp8 --input "$tmp/fp8b/input.safetensors" --output "$tmp/q.safetensors"
expect "quant-fp8 matches host" 0 "PASS" "$gen" check-quant "$tmp/fp8b/input.safetensors" "$tmp/q.safetensors"
expect "quant-fp8 per tensor" 0 "" "$clq" quant-fp8 --input "$d/input.safetensors" --output "$tmp/qt.safetensors" --per-tensor
expect "quant-fp8 per tensor matches host" 0 "PASS" "$gen" check-quant "$d/input.safetensors" "$tmp/qt.safetensors" per-tensor
expect "quant-fp8 per token" 0 "one scale per token" "$clq" quant-fp8 --input "$d/input.safetensors" --output "$tmp/qk.safetensors" --per-token
expect "quant-fp8 per token matches host" 0 "PASS" "$gen" check-quant "$d/input.safetensors" "$tmp/qk.safetensors" per-token
expect "quant-fp8 per token and per tensor" 2 "" "$clq" quant-fp8 --input "$d/input.safetensors" --output "$tmp/qx.safetensors" --per-token --per-tensor
# MoE: each expert kind through `clquant moe --check`, softmax and grouped routing.
M=model.layers.3.mlp
d="$tmp/moe-dense"; mkdir -p "$d"; "$gen" "$d" moe_dense 256 128 8 0 5 bf16 3
expect "moe dense softmax" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --top-k 2 --renormalize --check
[ -s "$d/y.safetensors" ] || { echo "FAIL moe wrote no output"; fail=1; }
# Routing from config.json: the family's rules, no routing flags; flags still override; no config
# and no --top-k is a clear error.
printf '{"model_type": "qwen3_moe", "num_experts_per_tok": 2, "norm_topk_prob": true}' > "$d/config.json"
expect "moe routing from config.json" 0 "routing from .*config.json" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y3.safetensors" --check
expect "moe config overridden by flags" 0 "top-3" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y4.safetensors" --top-k 3 --no-renormalize --check
rm "$d/config.json"
expect "moe without config needs --top-k" 4 "top-k is needed" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y5.safetensors"
d="$tmp/moe-int4"; mkdir -p "$d"; "$gen" "$d" moe_int4 256 128 8 0 3 f16 4
expect "moe int4" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --top-k 2 --check
d="$tmp/moe-int4-act"; mkdir -p "$d"; "$gen" "$d" moe_int4+actorder 256 128 8 0 20 f16 8
expect "moe int4 act-order" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --top-k 3 --check
expect "moe int4 act-order named" 0 "int4 act-order experts.*fused_moe/general" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y2.safetensors" --top-k 2
expect "inspect names moe act-order" 0 "int4 experts gptq.*act-order" "$clq" inspect "$d"
d="$tmp/moe-int8"; mkdir -p "$d"; "$gen" "$d" moe_int8+actorder 232 144 8 0 7 bf16 10
expect "moe int8 gptq act-order" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --top-k 3 --check
expect "moe int8 named" 0 "int8 act-order experts.*fused_moe/general" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y2.safetensors" --top-k 2
expect "moe int8 refuses decode" 4 "decode path does not apply: int8 experts" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y3.safetensors" --top-k 2 --variant decode
expect "inspect names moe int8" 0 "int8 experts gptq.*act-order" "$clq" inspect "$d"
rm "$d/quantize_config.json"
expect "moe int8 --bits 8" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y4.safetensors" --top-k 2 --format gptq --bits 8 --check
d="$tmp/moe-int8-ct"; mkdir -p "$d"; "$gen" "$d" moe_int8_ct 256 128 8 0 4 f16 11
expect "moe int8 compressed-tensors" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --top-k 2 --check
d="$tmp/moe-fp8-ue8m0"; mkdir -p "$d"; "$gen" "$d" moe_fp8+ue8m0 256 128 8 0 5 bf16 9
for v in general decode; do
  expect "moe fp8 ue8m0 $v" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y-$v.safetensors" --top-k 2 --variant $v --check
done
expect "moe fp8 ue8m0 named" 0 "ue8m0 activation scales" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y3.safetensors" --top-k 2
expect "inspect names moe ue8m0" 0 "fp8 e4m3 block experts, ue8m0 activation scales" "$clq" inspect "$d"
d="$tmp/moe-fp8"; mkdir -p "$d"; "$gen" "$d" moe_fp8 256 128 16 1 4 bf16 5
expect "moe fp8 grouped" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --top-k 6 --routing grouped --n-group 4 --topk-group 2 --routed-scaling 2.5 --renormalize --check
expect "moe fp8 decode path" 0 "fused_moe/decode.*ms device" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/yd.safetensors" --top-k 6 --routing grouped --n-group 4 --topk-group 2 --routed-scaling 2.5 --renormalize --variant decode --check
expect "moe general path" 0 "fused_moe/general.*ms device" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/yg.safetensors" --top-k 6 --routing grouped --n-group 4 --topk-group 2 --routed-scaling 2.5 --renormalize --variant general --check
expect "moe int4 refuses the decode path" 4 "decode path does not apply: int4 experts" "$clq" moe --weights "$tmp/moe-int4" --prefix $M --input "$tmp/moe-int4/input.safetensors" --output "$d/y6.safetensors" --top-k 2 --variant decode
expect "moe bad n-group" 4 "must divide E" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y2.safetensors" --top-k 2 --routing grouped --n-group 3
expect "moe bad prefix" 4 "no experts" "$clq" moe --weights "$d" --prefix nope --input "$d/input.safetensors" --output "$d/y2.safetensors" --top-k 2
[ -e "$d/y2.safetensors" ] && { echo "FAIL a refused moe run wrote an output"; fail=1; }
# Shared experts: DeepSeek-V3 (FP8, ungated, routing from config.json) and Qwen2-MoE (int4, gated).
d="$tmp/moe-ds"; mkdir -p "$d"; "$gen" "$d" moe_fp8+ds 256 128 16 1 3 bf16 6
printf '{"model_type": "deepseek_v3", "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2, "n_shared_experts": 2, "moe_intermediate_size": 128, "routed_scaling_factor": 2.5}' > "$d/config.json"
expect "moe deepseek shared experts" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --check
echo "$out" | grep -q "shared experts I=256 fp8" || { echo "FAIL deepseek shared experts not reported: $out"; fail=1; }
d="$tmp/moe-qwen"; mkdir -p "$d"; "$gen" "$d" moe_int4+qwen 256 128 8 0 5 f16 7
printf '{"model_type": "qwen2_moe", "num_experts_per_tok": 2, "shared_expert_intermediate_size": 384}' > "$d/config.json"
expect "moe qwen2 gated shared expert" 0 "check: .*PASS" "$clq" moe --weights "$d" --prefix $M --input "$d/input.safetensors" --output "$d/y.safetensors" --check
echo "$out" | grep -q "shared experts I=384 int4 (sigmoid-gated)" || { echo "FAIL qwen2 shared expert not reported: $out"; fail=1; }
if [ $fail -ne 0 ]; then echo "cli gemm: FAILED"; exit 1; fi
echo "cli gemm: all checks passed"
