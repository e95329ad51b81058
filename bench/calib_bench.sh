#!/usr/bin/env bash
# Calibration throughput (issue 7, part 3) on the GPU machine: an OLMoE-1B-7B-shaped random
# checkpoint (bench/make_random_checkpoint.py, 13.8 GB bf16, in /dev/shm), 512 samples x 512
# random token ids; `moeq calibrate --device cuda` against transformers 5.17's forward of the same
# ids (bench/calib_torch_baseline.py: plain, and with statistics hooks), `moeq bench calibrate` (moeq's
# forward alone vs with statistics), a second fresh `moeq calibrate` and one with MOEQ_TIMING=1 (time
# per forward stage); then moeq again under a
# GPU memory cap smaller than the model (PYTORCH_CUDA_ALLOC_CONF per_process_memory_fraction).
# Usage: bash bench/calib_bench.sh MOEQ_BINARY RESULTS_DIR [SAMPLES] [CHUNK]
set -uo pipefail
MOEQ=$1; RES=$2; N=${3:-512}; CHUNK=${4:-16}
cd "$(dirname "$0")/.."
mkdir -p "$RES"
SRC=/dev/shm/moeq-calib/olmoe; rm -rf /dev/shm/moeq-calib; mkdir -p /dev/shm/moeq-calib
t=$(date +%s.%N); python3 bench/make_random_checkpoint.py olmoe "$SRC" > /dev/null 2>&1 || exit 1
echo "checkpoint: $(du -sh $SRC | cut -f1) in $(awk "BEGIN{print $(date +%s.%N)-$t}") s"
python3 -c "import numpy as np; np.save('/dev/shm/moeq-calib/ids.npy', np.random.default_rng(0).integers(0, 50304, ($N, 512)).astype(np.int64))"
echo "== moeq calibrate ($N x 512 tokens, chunk $CHUNK samples, bf16)"
t=$(date +%s.%N)
timeout 240 "$MOEQ" calibrate "$SRC" --data /dev/shm/moeq-calib/ids.npy --samples $N --seq-len 512 --device cuda --chunk $CHUNK \
  -o /dev/shm/moeq-calib/calib.h5 2>&1 | grep -E "wrote|peak|rror|fallback|grouped|loop" | tail -6
echo "wall (process, incl. data load and CUDA init): $(awk "BEGIN{print $(date +%s.%N)-$t}") s"
echo "== moeq calibrate again (a second fresh process: run-to-run spread)"
timeout 240 "$MOEQ" calibrate "$SRC" --data /dev/shm/moeq-calib/ids.npy --samples $N --seq-len 512 --device cuda --chunk $CHUNK \
  -o /dev/shm/moeq-calib/calib2.h5 2>&1 | grep -E "wrote|rror" | tail -2
echo "== MOEQ_TIMING=1 moeq calibrate (per stage; the device is synchronised at every stage boundary, so slower)"
MOEQ_TIMING=1 timeout 240 "$MOEQ" calibrate "$SRC" --data /dev/shm/moeq-calib/ids.npy --samples $N --seq-len 512 --device cuda \
  --chunk $CHUNK -o /dev/shm/moeq-calib/calib-t.h5 2>&1 | grep -E "^\[timing\]"
echo "== moeq bench calibrate (forward alone vs forward + statistics, same ids, one process)"
timeout 240 "$MOEQ" bench calibrate "$SRC" --data /dev/shm/moeq-calib/ids.npy --samples $N --seq-len 512 --device cuda --chunk $CHUNK 2>&1 | tail -3
echo "== transformers 5.17 (grouped_mm experts, sdpa), batch $CHUNK"
timeout 240 python3 bench/calib_torch_baseline.py "$SRC" /dev/shm/moeq-calib/ids.npy $CHUNK 2>&1 | grep -E "^(load|transformers)" | tail -4
echo "== moeq calibrate under a GPU memory cap (per_process_memory_fraction 0.03 of the card)"
PYTORCH_CUDA_ALLOC_CONF=per_process_memory_fraction:0.03 timeout 240 "$MOEQ" calibrate "$SRC" --data /dev/shm/moeq-calib/ids.npy \
  --samples $N --seq-len 512 --device cuda --chunk $CHUNK -o /dev/shm/moeq-calib/calib-cap.h5 2>&1 | grep -E "wrote|peak|rror" | tail -4
