#!/usr/bin/env bash
# One batch for the GPU machine (H100/H200): build with CUDA, run the CUDA tests
# (CPU == CUDA bytes for every format), the plugin tests, and the benchmarks.
# Usage: bash scripts/gpu_check.sh OUT_DIR
set -uo pipefail
OUT=${1:-gpu-out}; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
B=build-gpu
t0=$(date +%s)
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TP" -DMOEQ_PYTHON=python3 -DMOEQ_CUDA=ON \
  > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build $B -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
$B/tests/moeq_tests "[cuda]" --reporter compact 2>&1 | tee "$OUT/cuda_tests.txt" | tail -15
python3 tests/python/make_tiny.py $B/tiny > /dev/null 2>&1 && MOEQ_TINY_DIR=$B/tiny $B/tests/moeq_tests "[tiny]" 2>&1 | tail -2
for shape in 128,1408,2816 128,2816,704 128,1536,2048; do
  $B/moeq bench formats --device cuda --shape $shape --iters 20 --json "$OUT/bench_cuda_${shape//,/x}.json" 2>&1 | tee -a "$OUT/bench.txt"
done
$B/moeq bench formats --device cpu --shape 8,1408,2816 --iters 3 --json "$OUT/bench_cpu16.json" 2>&1 | tee -a "$OUT/bench.txt"
