#!/usr/bin/env bash
# The activation-only floor of NVFP4 W4A4 experts-only (docs/quality.md, "The activation-only
# floor"): one moeq compare --activations-only over nvfp4_experts_only and the two analysis
# recipes beside this script (gate_up's input only, down's input only), then, if PY has h5py,
# the same with every input amax x 0.5 and x 0.25 (scale_amax.py).
#
# Usage: act_floor.sh MOEQ MODEL DATA_DIR OUT [CAL_SAMPLES CAL_SEQ EVAL_SAMPLES EVAL_SEQ DEVICE PY]
#   defaults: 256 512 64 512 cpu python3
set -euo pipefail
MOEQ=$1 MODEL=$2 DATA=$3 OUT=$4
CS=${5:-256} CL=${6:-512} ES=${7:-64} EL=${8:-512} DEV=${9:-cpu} PY=${10:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
RECIPES="$HERE/../../../recipes/nvfp4_experts_only.yaml $HERE/nvfp4_experts_gate_up_input.yaml $HERE/nvfp4_experts_down_input.yaml"
mkdir -p "$OUT"
"$MOEQ" calibrate "$MODEL" --data "$DATA/calib.jsonl" --samples "$CS" --seq-len "$CL" --device "$DEV" --quiet \
  -o "$OUT/calib.h5"
# shellcheck disable=SC2086
"$MOEQ" compare "$MODEL" --recipes $RECIPES --calib "$OUT/calib.h5" --eval "$DATA/eval.jsonl" \
  --eval-samples "$ES" --eval-seq-len "$EL" --device "$DEV" --activations-only -o "$OUT/cmp" | tee "$OUT/cmp.txt"
if ! "$PY" -c "import h5py" 2>/dev/null; then
  echo "act_floor.sh: $PY has no h5py: the amax x 0.5 / x 0.25 runs are skipped"
  exit 0
fi
for f in 0.5 0.25; do
  "$PY" "$HERE/scale_amax.py" "$OUT/calib.h5" "$OUT/calib_x$f.h5" "$f"
  "$MOEQ" compare "$MODEL" --recipes "$HERE/../../../recipes/nvfp4_experts_only.yaml" --calib "$OUT/calib_x$f.h5" \
    --eval "$DATA/eval.jsonl" --eval-samples "$ES" --eval-seq-len "$EL" --device "$DEV" --activations-only \
    -o "$OUT/cmp_x$f" | tee "$OUT/cmp_x$f.txt"
done
