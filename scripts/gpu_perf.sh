#!/usr/bin/env bash
# The performance batch for the GPU machine, on binaries built elsewhere (BIN holds moeq,
# moeq_tests and the non-torch shared libraries they need; the GPU machine's torch provides
# libtorch): CUDA tests, kernel benchmarks on three expert-stack shapes, a CPU == CUDA check
# of a whole export, and the end-to-end timing (bench/e2e_quantize.sh).
# Usage: bash scripts/gpu_perf.sh BIN OUT_DIR [ORACLE_DIR] [--no-torch]
set -uo pipefail
BIN=$(realpath "$1"); OUT=$2; ORACLES=${3:-}; NO_TORCH=${4:-}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="$BIN/lib:$TL:$TL/../../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
ldd "$BIN/moeq" | grep "not found" && exit 1
{
  echo "== [cuda] tests"
  MOEQ_ORACLE_DIR=$ORACLES "$BIN/moeq_tests" "[cuda]" --reporter compact 2>&1 | grep -v "^compare" | tail -8
  echo "== kernel benchmarks"
  for shape in 128,1408,2816 128,2816,704 128,1536,2048; do
    "$BIN/moeq" bench formats --device cuda --shape $shape --iters 20 --json "$OUT/bench_cuda_${shape//,/x}.json" 2>&1
  done
  if [ -x "$BIN/moeq_main" ]; then  # the kernels before this branch, same card
    echo "== kernel benchmark, main's build"
    "$BIN/moeq_main" bench formats --device cuda --shape 128,1408,2816 --iters 20 2>&1
    export MOEQ_BEFORE="$BIN/moeq_main"
  fi
  echo "== CPU == CUDA export (olmoe-mini)"
  M=/tmp/olmoe-mini; rm -rf $M /tmp/mini-cpu /tmp/mini-cuda
  python3 bench/make_random_checkpoint.py olmoe-mini $M > /dev/null
  for d in cpu cuda; do
    "$BIN/moeq" quantize $M --recipe recipes/nvfp4_experts_only.yaml --weight-only --device $d -o /tmp/mini-$d | tail -1
  done
  for f in /tmp/mini-cpu/*.safetensors; do cmp "$f" "/tmp/mini-cuda/$(basename "$f")" && echo "same bytes: $(basename "$f")"; done
  echo "== end to end"
  MOEQ_TIMING=1 bash bench/e2e_quantize.sh "$BIN/moeq" "$OUT" olmoe $NO_TORCH
} 2>&1 | tee "$OUT/log.txt"
