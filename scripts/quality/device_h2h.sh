#!/usr/bin/env bash
# Runs the head-to-head (head_to_head.sh) on the GPU machine: moeq's staged binary, the trained
# model and the peers' wheels come from STAGE (scripts/quality/stage_h2h_for_device.sh); the peers
# calibrate on the GPU, moeq calibrates there too; the evaluator runs on the host CPU in float32.
# Exports stay in /tmp/h2h; logs, the results JSON and each export's metadata go to $OUT.
# Usage (in the checkout on the device): bash STAGE/device_h2h.sh [N_CALIB] [N_EVAL]
#   (head_to_head.sh's env picks what runs: MOEQ_RECIPES, MO_VARIANTS, LLMC_VARIANTS, EVAL_EXPORTS)
set -uo pipefail
R=$(pwd); S=$(realpath "$(dirname "$0")"); OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for t in moeq model site; do tar xJf "$S/$t.tar.xz" -C /tmp; done
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="/tmp/gpu-bin/lib:$TL:$TL/../../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
printf '#!/bin/sh\nPYTHONPATH=/tmp/site312 exec python3 "$@"\n' > /tmp/py-mo
printf '#!/bin/sh\nPYTHONPATH=/tmp/site-llmc exec python3 "$@"\n' > /tmp/py-llmc
chmod +x /tmp/py-mo /tmp/py-llmc
export MOEQ=/tmp/gpu-bin/moeq PY=/tmp/py-mo PY_LLMC=/tmp/py-llmc MODEL=/tmp/shared/models/qwen3moe-tiny \
  DATA=/tmp/shared/data N_CALIB=${1:-256} N_EVAL=${2:-128} NICE=0 STEP_TIMEOUT=${STEP_TIMEOUT:-240} \
  H2H_DEVICE=cuda CAL_DEVICE=cuda CMP_DEVICE=${CMP_DEVICE:-cuda} EVAL_EXPORTS=${EVAL_EXPORTS:-1}
{ nvidia-smi -L; nproc; $PY -c 'import modelopt, torch, transformers; print("modelopt", modelopt.__version__, "torch", torch.__version__, "transformers", transformers.__version__)'
  $PY_LLMC -c 'import llmcompressor, compressed_tensors; print("llmcompressor", llmcompressor.__version__, "compressed-tensors", compressed_tensors.__version__)'
  time bash "$R/scripts/quality/head_to_head.sh" /tmp/h2h; } > "$OUT/h2h.txt" 2>&1
# few files come back from the device: the results JSON, and the rest (logs, each export's JSON) as one tar
cd /tmp/h2h && cp h2h_results.json "$OUT/" 2>/dev/null
cp moeq_compare_exports/report.md "$OUT/moeq_compare_exports.md" 2>/dev/null
tar cJf "$OUT/h2h_logs.tar.xz" -- *.log moeq_compare/report.json moeq_compare_exports/report.json mq/*/*.json modelopt/*/*.json llmc/*/*.json 2>/dev/null
tail -60 "$OUT/h2h.txt"
