#!/usr/bin/env bash
# Issue 14's batch for the GPU machine, on binaries built elsewhere (BIN holds moeq, moeq_tests
# and the non-torch shared libraries they need, scripts/stage_for_gpu.sh; the GPU machine's torch
# provides libtorch). About 3-5 minutes on an H200; everything goes to OUT_DIR (log.txt and the
# JSON / text files of each step):
#   1. moeq_tests "[source]": the fused source -> NVFP4 kernels = the two passes (decode, then
#      nvfp4) byte for byte, the decode kernels = the CPU, quantize --device cuda's device decode
#      = the CPU's gathered stack (tests/test_source_nvfp4.cpp)
#   2. moeq bench source, FP8 block (DeepSeek-V3 expert stack 256 x 2048 x 7168) and MXFP4
#      (gpt-oss-120b gate_up 128 x 5760 x 2880): decode, NVFP4 of the decoded stack, the two
#      passes, the fused kernels, each in GB/s against the copy bandwidth of the same run
#   3. CPU == CUDA export (cmp of every shard) of a small FP8-block DeepSeek-V3 checkpoint
#      (bench/make_random_checkpoint.py deepseek-v3-mini; and BIN/moeq_main's CUDA export, when present)
#   4. end to end, DeepSeek-V3 layers at real dimensions (bench/e2e_source_quantize.sh), with
#      BIN/moeq_main (a build of main, which decodes on the host) timed too when present
#   5. every other [cuda] test (regressions)
# Usage: bash scripts/gpu_issue14.sh BIN OUT_DIR
set -uo pipefail
BIN=$(realpath "$1"); OUT=$2
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
free -g | head -2 | tee -a "$OUT/gpu.txt"; df -h /dev/shm /tmp | tee -a "$OUT/gpu.txt"
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="$BIN/lib:$TL:$TL/../../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
ldd "$BIN/moeq" | grep "not found" && exit 1
start=$(date +%s)
stamp() { echo "-- $(( $(date +%s) - start )) s"; }
{
  echo "== 1. [source] tests"
  timeout 90 "$BIN/moeq_tests" "[source]" --reporter compact 2>&1 | tail -15
  stamp
  echo "== 2. bench source"
  timeout 60 "$BIN/moeq" bench source --device cuda --shape 256,2048,7168 --iters 10 --json "$OUT/bench_source_fp8.json" 2>&1
  timeout 60 "$BIN/moeq" bench source --device cuda --source mxfp4 --shape 128,5760,2880 --iters 10 \
    --json "$OUT/bench_source_mxfp4.json" 2>&1
  stamp
  echo "== 3. CPU == CUDA export, FP8-block source (deepseek-v3-mini)"
  M=/tmp/dsv3-mini; rm -rf $M /tmp/dsv3-mini-cpu /tmp/dsv3-mini-cuda /tmp/dsv3-mini-main
  python3 bench/make_random_checkpoint.py deepseek-v3-mini $M > /dev/null
  for d in cpu cuda; do
    MOEQ_TIMING=1 "$BIN/moeq" quantize $M --recipe recipes/nvfp4_experts_only.yaml --weight-only --device $d \
      -o /tmp/dsv3-mini-$d 2>&1 | tail -2
  done
  [ -x "$BIN/moeq_main" ] && "$BIN/moeq_main" quantize $M --recipe recipes/nvfp4_experts_only.yaml --weight-only \
    --device cuda -o /tmp/dsv3-mini-main 2>&1 | tail -1
  for f in /tmp/dsv3-mini-cpu/*.safetensors; do
    b=$(basename "$f")
    cmp "$f" "/tmp/dsv3-mini-cuda/$b" && echo "same bytes, cpu and cuda: $b"
    [ -d /tmp/dsv3-mini-main ] && cmp "$f" "/tmp/dsv3-mini-main/$b" && echo "same bytes, cpu and main's cuda: $b"
  done
  "$BIN/moeq" verify /tmp/dsv3-mini-cuda --source $M 2>&1 | tail -2
  rm -rf $M /tmp/dsv3-mini-cpu /tmp/dsv3-mini-cuda /tmp/dsv3-mini-main
  stamp
  echo "== 4. end to end, DeepSeek-V3 layers at real dimensions"
  [ -x "$BIN/moeq_main" ] && export MOEQ_BEFORE="$BIN/moeq_main"
  timeout 240 bash bench/e2e_source_quantize.sh "$BIN/moeq" "$OUT" deepseek-v3
  stamp
  echo "== 5. the other [cuda] tests"
  timeout 90 "$BIN/moeq_tests" "[cuda]~[source]" --reporter compact 2>&1 | grep -v "^compare" | tail -8
  stamp
} 2>&1 | tee "$OUT/log.txt"
