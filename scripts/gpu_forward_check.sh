#!/usr/bin/env bash
# GPU check of the native forward (H100/H200): build moeq_forward_tests with CUDA, write the
# tiny checkpoints and the transformers oracle, run the [forward] tests on the GPU (proves the
# at::_grouped_mm path) and on the CPU. Usage: bash scripts/gpu_forward_check.sh OUT_DIR
set -uo pipefail
OUT=${1:-gpu-out}; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
B=build-gpu-fwd
FAMS="qwen3_moe olmoe mixtral gemma4"
t0=$(date +%s)
# The tiny checkpoints and oracle (CPU, transformers) while the build runs.
(PYTHONWARNINGS=ignore python3 tests/python/make_tiny.py $B/tiny $FAMS \
  && PYTHONWARNINGS=ignore python3 tests/python/forward_oracle.py $B/tiny $FAMS) > "$OUT/oracle.txt" 2>&1 &
oracle=$!
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TP" -DMOEQ_PYTHON=python3 -DMOEQ_CUDA=ON \
  > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build $B --target moeq_forward_tests -j "$(nproc)" > "$OUT/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
wait $oracle || { tail -20 "$OUT/oracle.txt"; exit 1; }
grep wrote "$OUT/oracle.txt"
echo "oracle: $(( $(date +%s) - t0 )) s"
for dev in cuda cpu; do
  echo "== MOEQ_TEST_DEVICE=$dev"
  MOEQ_FORWARD_DIR=$B/tiny MOEQ_TEST_DEVICE=$dev $B/tests/moeq_forward_tests "[forward]" --reporter compact \
    2>&1 | tee "$OUT/tests_$dev.txt" | grep -vE "^\s*$" | cut -c1-400 | tail -40
done
