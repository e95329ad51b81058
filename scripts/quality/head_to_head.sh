#!/usr/bin/env bash
# Head-to-head of issue 16: moeq, NVIDIA ModelOpt and llm-compressor quantize the trained
# qwen3moe-tiny with the same calibration tokens; two evaluators measure every export on the same
# held-out windows: eval_exports.py (its own decode + per-expert NVFP4 activation fake quantization
# in transformers' float32 CPU forward) and `moeq compare --exports` (moeq's verify readers and
# native forward, each export's own input scales); the last table puts them side by side.
# `moeq compare --recipes` cross-checks the evaluator on moeq's own NVFP4 export, and
# `moeq quantize --dump-dequant` its dequantization, bit for bit.
#
# Usage: bash scripts/quality/head_to_head.sh [WORK_DIR]
#   env: MOEQ (binary, default build/moeq), PY (project venv python), PY_LLMC (a venv with
#        llmcompressor 0.14.0.1 + compressed-tensors 0.19.0; created in WORK_DIR if missing),
#        MODEL, DATA, N_CALIB (128), N_EVAL (64), SEQ (512), NICE (10), STEP_TIMEOUT (seconds per
#        step, 0 = none), H2H_DEVICE (the peers' device, cpu), CAL_DEVICE (moeq calibrate's, cpu),
#        CMP_DEVICE (moeq compare's, cpu), MOEQ_RECIPES, MO_VARIANTS, LLMC_VARIANTS (what to run),
#        EVAL_EXPORTS (1; 0 skips eval_exports.py and leaves the evaluation to moeq compare --exports)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-/tmp/h2h}
MOEQ=${MOEQ:-$ROOT/build/moeq}
PY=${PY:-$HOME/.cache/moeq/venv/bin/python}
MODEL=${MODEL:-$ROOT/../shared/models/qwen3moe-tiny}
DATA=${DATA:-$ROOT/../shared/data}
N_CALIB=${N_CALIB:-128}; N_EVAL=${N_EVAL:-64}; SEQ=${SEQ:-512}
RUN="timeout ${STEP_TIMEOUT:-0} nice -n ${NICE:-10}"
Q=$ROOT/scripts/quality
mkdir -p "$W" "$W/mq"; cd "$W"
export PYTHONUNBUFFERED=1

# llm-compressor in its own venv, seeing the project venv's torch / transformers through a .pth,
# so that the project venv's pins (compressed-tensors 0.20) stay untouched.
PY_LLMC=${PY_LLMC:-$W/venv-llmc/bin/python}
if ! "$PY_LLMC" -c "import llmcompressor" 2>/dev/null; then
  "$PY" -m venv --system-site-packages "$W/venv-llmc"
  "$W/venv-llmc/bin/pip" install -q --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru
  "$("$PY" -c 'import site; print(site.getsitepackages()[0])')" 2>/dev/null || true
  "$PY" -c 'import site; print(site.getsitepackages()[0])' > "$W/venv-llmc/lib/python3.11/site-packages/zz_project_venv.pth"
  "$W/venv-llmc/bin/pip" install -q "datasets>=4.8.4"   # llmcompressor imports it; torch is not re-resolved
  PY_LLMC=$W/venv-llmc/bin/python
fi

echo "== token windows (moeq's packing): calib $N_CALIB x $SEQ, eval $N_EVAL x $SEQ"
$PY "$Q/make_ids.py" "$MODEL" "$DATA/calib.jsonl" "$N_CALIB" "$SEQ" calib_ids
$PY "$Q/make_ids.py" "$MODEL" "$DATA/eval.jsonl" "$N_EVAL" "$SEQ" eval_ids

echo "== moeq calibrate (+ GPTQ Hessians)"
$RUN "$MOEQ" calibrate "$MODEL" --data calib_ids.npy --samples "$N_CALIB" --seq-len "$SEQ" --dtype f32 \
  --device "${CAL_DEVICE:-cpu}" --gptq-hessians --channel-amax --quiet -o calib.h5
RECIPES=(${MOEQ_RECIPES:-nvfp4_experts_only nvfp4_experts_only_mse nvfp4_experts_only_gptq nvfp4_experts_only_awq \
  w4a16_int4 w4a16_int4_gptq w4a16_int4_g32 w4a16_int4_g32_gptq w4a16_int4_g32_awq})
MO=(${MO_VARIANTS:-max mse awq_lite gptq}); LLMC=(${LLMC_VARIANTS:-nvfp4 w4a16_gptq w4a16_gptq_g32})
CMP_DEV=(--device "${CMP_DEVICE:-cpu}")

echo "== moeq quantize + verify"
for r in "${RECIPES[@]}"; do
  extra=(); [ "$r" = nvfp4_experts_only ] && extra=(--dump-dequant moeq_deq_nvfp4_experts_only)
  # w4a16_int4*: refused on this model at 4b8490c (down_proj's input 96 is no multiple of group 128)
  if $RUN "$MOEQ" quantize "$MODEL" --recipe "$ROOT/recipes/$r.yaml" --calib calib.h5 -o "mq/$r" --overwrite "${extra[@]}" > "moeq_$r.log" 2>&1; then
    $RUN "$MOEQ" verify "mq/$r" --source "$MODEL" > "moeq_verify_$r.log" 2>&1 && echo "verify $r: ok" || echo "verify $r: FAILED"
  else
    echo "quantize $r: refused: $(tail -1 "moeq_$r.log")"
  fi
done

echo "== moeq compare (its native forward, float32) on the same eval windows: the evaluator's cross-check"
$RUN "$MOEQ" compare "$MODEL" --recipes "$ROOT/recipes/nvfp4_experts_only.yaml" --calib calib.h5 \
  --eval-ids eval_ids.safetensors --eval-dtype float32 "${CMP_DEV[@]}" -o moeq_compare > moeq_compare.log

echo "== NVIDIA ModelOpt"
$RUN $PY "$Q/peer_modelopt.py" "$MODEL" calib_ids.safetensors modelopt "${MO[@]}" > modelopt.log 2>&1 || true

echo "== llm-compressor"
$RUN "$PY_LLMC" "$Q/peer_llmcompressor.py" "$MODEL" calib_ids.safetensors llmc "${LLMC[@]}" > llmc.log 2>&1 || true

"$PY_LLMC" "$Q/check_ct_decoders.py"
echo "== evaluator: bit-for-bit dequantization check against moeq quantize --dump-dequant"
$RUN $PY "$Q/eval_exports.py" --check-dequant "$MODEL" mq/nvfp4_experts_only moeq_deq_nvfp4_experts_only

echo "== evaluator: every export, same forward, same windows"
specs=()
for r in "${RECIPES[@]}"; do [ -f "mq/$r/config.json" ] && specs+=("moeq:$r=mq/$r"); done
for v in "${MO[@]}"; do [ -f "modelopt/$v/config.json" ] && specs+=("modelopt:$v=modelopt/$v"); done
for v in "${LLMC[@]}"; do [ -f "llmc/$v/config.json" ] && specs+=("llmc:$v=llmc/$v"); done
[ "${EVAL_EXPORTS:-1}" = 1 ] && $RUN $PY "$Q/eval_exports.py" "$MODEL" eval_ids.safetensors h2h_results.json "${specs[@]}"

echo "== moeq compare --exports: moeq's native forward reads every export (its own decode, each export's input scales)"
mq_specs=()
for s in "${specs[@]}"; do mq_specs+=("${s/:/_}"); done   # NAME=DIR, the tool prefix joined by '_'
$RUN "$MOEQ" compare "$MODEL" --exports "${mq_specs[@]}" --eval-ids eval_ids.safetensors --eval-dtype float32 \
  "${CMP_DEV[@]}" -o moeq_compare_exports > moeq_compare_exports.log 2>&1 || { echo "compare --exports: FAILED: $(tail -1 moeq_compare_exports.log)"; }
$PY - <<'PY'
import json
r = json.load(open("moeq_compare/report.json"))["variants"][0]["output_error"]
print(f"moeq compare nvfp4_experts_only (W4A4): ppl_ref {r['ppl_ref']:.4f} ppl {r['ppl_quant']:.4f} KL {r['kl_mean']:.5f} top1 {r['top1']:.4f}")
import os
ev = ({v["name"].replace(":", "_"): v for v in json.load(open("h2h_results.json"))["variants"]}
      if os.path.exists("h2h_results.json") else {})
if os.path.exists("moeq_compare_exports/report.json"):
    print(f"{'export':34s} {'rows':>5s} {'moeq ppl delta':>15s} {'eval_exports':>13s} {'moeq KL':>9s} {'eval_exports':>13s} {'moeq top1':>9s} {'eval_exports':>12s}")
    for v in json.load(open("moeq_compare_exports/report.json"))["variants"]:
        if v["activations"]["weights_only_twin"]:
            continue
        o, e = v["output_error"], ev.get(v["name"], {})
        print(f"{v['name']:34s} {v['quantized_sites']:5d} {o['ppl_delta']:+15.4f} {e.get('ppl_delta', float('nan')):+13.4f} "
              f"{o['kl_mean']:9.5f} {e.get('kl_mean', float('nan')):13.5f} {o['top1']:9.4f} {e.get('top1', float('nan')):12.4f}")
PY
