#!/usr/bin/env bash
# Runs the staged ctest suite (scripts/stage_suite_for_device.sh) on the GPU machine's host CPU,
# the GPU hidden, as CI would on an AVX-512 host. The binaries and ctest files name /work/main
# (where they were built): that path is linked to this checkout. Writes $OUT/ctest.txt.
# Usage (in the checkout on the device): bash STAGE/device_ctest.sh [ctest -E regex]
set -uo pipefail
R=$(pwd); S=$(realpath "$(dirname "$0")"); OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
lscpu | grep -E 'Model name'; grep -o -w -E 'avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort | uniq -c
mkdir -p /work 2>/dev/null; [ -e /work/main ] || ln -s "$R" /work/main
tar xJf "$S/build.tar.xz" -C "$R" && tar xJf "$S/site.tar.xz" -C /tmp && mkdir -p /tmp/mc && tar xJf "$S/tok.tar.xz" -C /tmp/mc
mkdir -p /root/.cache/moeq/venv/bin && printf '#!/bin/sh\nexec python3 "$@"\n' > /root/.cache/moeq/venv/bin/python
chmod +x /root/.cache/moeq/venv/bin/python; [ -x /usr/bin/cmake ] || ln -s "$(command -v cmake)" /usr/bin/cmake
export PYTHONPATH=/tmp/site312 MOEQ_CACHE=/tmp/mc CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="$R/build/lib:$TL:$TL/../../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
cd /work/main/build && timeout "${CTEST_BUDGET:-540}" ctest -j14 --output-on-failure --timeout 500 -E "${1:-^$}" 2>&1 | tail -150
} > "$OUT/ctest.txt" 2>&1
cp /work/main/build/Testing/Temporary/LastTest.log "$OUT/" 2>/dev/null; tail -40 "$OUT/ctest.txt"
