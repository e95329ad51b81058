#!/usr/bin/env bash
# The quality table of docs/quality.md on the GPU machine: moeq calibrate (GPTQ Hessians and
# per-channel amax) and moeq compare of every shipped experts recipe on the trained model, 256 x
# 512 calibration and 256 x 512 held-out tokens, bf16 forward on the GPU.
# STAGE holds bin.tar.xz (gpu-bin/: moeq, moeq_tests, libraries; scripts/stage_for_gpu.sh) and
# model.tar.xz (shared/models/qwen3moe-tiny, shared/data; scripts/quality/stage_h2h_for_device.sh).
# Usage (in the checkout on the device): bash scripts/quality/device_quality.sh STAGE OUT_DIR
# (QUALITY_RECIPES="r1 r2 ...": recipe names from recipes/ instead of the shipped experts set)
set -uo pipefail
S=$(realpath "$1"); OUT=$(realpath -m "$2"); mkdir -p "$OUT"; R=$(pwd)
[ -x /tmp/gpu-bin/moeq ] || tar xJf "$S/bin.tar.xz" -C /tmp
[ -d /tmp/shared ] || tar xJf "$S/model.tar.xz" -C /tmp
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="/tmp/gpu-bin/lib:$TL:$TL/../../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
M=/tmp/shared/models/qwen3moe-tiny; D=/tmp/shared/data; Q=/tmp/quality; mkdir -p $Q
{
/tmp/gpu-bin/moeq calibrate $M --data $D/calib.jsonl --samples 256 --seq-len 512 --device cuda \
  --gptq-hessians --channel-amax -o $Q/calib.h5 2>&1 | grep -v -E ': +[0-9]+% \('
rs=(); for r in ${QUALITY_RECIPES:-nvfp4_experts_only nvfp4_experts_only_mse nvfp4_experts_only_gptq nvfp4_experts_only_awq \
  w4a16_int4 w4a16_int4_gptq w4a16_int4_g32 w4a16_int4_g32_gptq w4a16_int4_g32_awq nf4_experts fp8}; do
  rs+=("$R/recipes/$r.yaml"); done
time /tmp/gpu-bin/moeq compare $M --recipes "${rs[@]}" --calib $Q/calib.h5 --eval $D/eval.jsonl \
  --eval-samples 256 --eval-seq-len 512 --device cuda -o $Q/cmp 2>&1 | grep -v -E ': +[0-9]+% \('
} > "$OUT/quality.txt" 2>&1
cp $Q/cmp/report.md "$OUT/quality_report.md" 2>/dev/null
tail -30 "$OUT/quality.txt"
