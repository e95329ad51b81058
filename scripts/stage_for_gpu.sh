#!/usr/bin/env bash
# Stages binaries built here (Debian 12, the torch 2.11.0 cu130 wheel) for the GPU machine
# (Ubuntu 24.04, the same torch): moeq, moeq_tests and the shared libraries they need that are
# neither torch's (the GPU machine's torch provides those) nor the C/C++ runtime (newer there).
# Saves the GPU machine's build time. Usage: bash scripts/stage_for_gpu.sh BUILD_DIR DEST
set -euo pipefail
BUILD=$1; DEST=$2
mkdir -p "$DEST/lib"
BINS=("$BUILD/moeq"); [ -f "$BUILD/tests/moeq_tests" ] && BINS+=("$BUILD/tests/moeq_tests")  # a build without tests stages moeq alone
cp "${BINS[@]}" "$DEST/"
for bin in "${BINS[@]}"; do
  ldd "$bin" | awk '/=> \// {print $3}' | grep -v -E '/venv/|/torch/|/nvidia/|lib(c|m|dl|rt|pthread|stdc\+\+|gcc_s)\.so|ld-linux' \
    | xargs -r -I{} cp -L -n {} "$DEST/lib/"
done
strip "$DEST"/moeq* 2>/dev/null || true
du -sh "$DEST"
