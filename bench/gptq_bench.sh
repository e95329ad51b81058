#!/usr/bin/env bash
# GPTQ's time and memory beside the plain path (issue 16) on a Qwen3-30B-A3B-shaped random
# checkpoint (bench/make_random_checkpoint.py qwen3moe: real dimensions, MOEQ_LAYERS of its 48
# layers, default 4) in tmpfs, N x 512 random token ids:
#   calibrate          moeq calibrate --device cuda (amax statistics: the plain path's input)
#   calibrate+H        the same with --gptq-hessians (GPTQ's input), and the Hessian file's size
#   quantize max/gptq  nvfp4_experts_only{,_gptq} (W4A4, ModelOpt) and w4a16_int4_g32{,_gptq}
#                      (compressed-tensors; its GPTQ covers attention too) with --device cuda
#   verify             of each GPTQ export against the source
# Peak GPU memory: calibrate prints the caching allocator's peak; for every step the peak of
# nvidia-smi's memory.used (the whole process: CUDA context and allocator cache included),
# sampled every 100 ms. Per-layer figures are the total over the MOEQ_LAYERS layers / layers;
# the model's other costs (embedding, lm_head, startup) are in the same totals, not split out.
# Usage: bash bench/gptq_bench.sh MOEQ_BINARY RESULTS_DIR [SAMPLES]
# (MOEQ_DEVICE=cpu: a smoke test of the script on a machine without a GPU; no nvidia-smi there)
set -uo pipefail
MOEQ=$1; RES=$(realpath -m "$2"); N=${3:-256}
cd "$(dirname "$0")/.."
DEV=${MOEQ_DEVICE:-cuda}
mkdir -p "$RES"
ROOT=/dev/shm/moeq-gptq; rm -rf $ROOT; mkdir -p $ROOT
SRC=$ROOT/qwen3moe; L=${MOEQ_LAYERS:-4}; export MOEQ_LAYERS=$L
LOG=$RES/gptq_bench.txt; : > "$LOG"
t=$(date +%s.%N); python3 bench/make_random_checkpoint.py qwen3moe "$SRC" > /dev/null 2>&1 || { echo "checkpoint failed" | tee -a "$LOG"; exit 1; }
echo "checkpoint: Qwen3-30B-A3B shape, $L layers, $(du -sh $SRC | cut -f1) in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$t}") s" | tee -a "$LOG"
python3 -c "import numpy as np; np.save('$ROOT/ids.npy', np.random.default_rng(0).integers(0, 151936, ($N, 512)).astype(np.int64))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"

# step NAME CMD...: wall seconds, exit code, nvidia-smi peak; the command's last lines to the log.
step() {
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > $ROOT/smi.txt 2>/dev/null &
  local smi=$!
  local a=$(date +%s.%N)
  timeout ${STEP_TIMEOUT:-240} "$@" > $ROOT/step.txt 2>&1; local rc=$?
  local b=$(date +%s.%N)
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  local peak=$(sort -n $ROOT/smi.txt | tail -1)
  printf "%-22s %8.2f s  rc %s  nvidia-smi peak %s MiB\n" "$name" "$(awk "BEGIN{print $b-$a}")" "$rc" "${peak:-?}" | tee -a "$LOG"
  grep -v -E ': +[0-9]+% \(' $ROOT/step.txt | grep -E "wrote|peak|rror|fallback|OK|FAIL|gptq|timing" | tail -6 | sed 's/^/    /' | tee -a "$LOG"
}
C=(calibrate "$SRC" --data $ROOT/ids.npy --samples $N --seq-len 512 --device $DEV --chunk 16)
step "calibrate" "$MOEQ" "${C[@]}" -o $ROOT/plain.h5
step "calibrate+H" "$MOEQ" "${C[@]}" --gptq-hessians -o $ROOT/gptq.h5
echo "    Hessian file: $(du -sh $ROOT/gptq.hessians.safetensors | cut -f1) for $L layers" | tee -a "$LOG"
for r in nvfp4_experts_only w4a16_int4_g32; do
  step "quantize $r" env MOEQ_TIMING=1 "$MOEQ" quantize "$SRC" --recipe recipes/$r.yaml --calib $ROOT/plain.h5 --device $DEV -o $ROOT/out-$r
  step "quantize ${r}_gptq" env MOEQ_TIMING=1 "$MOEQ" quantize "$SRC" --recipe recipes/${r}_gptq.yaml --calib $ROOT/gptq.h5 --device $DEV -o $ROOT/out-${r}_gptq
  step "verify ${r}_gptq" "$MOEQ" verify $ROOT/out-${r}_gptq --source "$SRC"
  grep -i -E "gptq|fallback" $ROOT/out-${r}_gptq/report.md 2>/dev/null | head -4 | sed 's/^/    report: /' | tee -a "$LOG"
  rm -rf $ROOT/out-$r $ROOT/out-${r}_gptq
done
rm -rf $ROOT
