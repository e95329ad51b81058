#!/usr/bin/env bash
# Stages the whole ctest suite for the GPU machine's host CPU (Intel, AVX-512/AMX; no network):
# the built tree's binaries and ctest files, the reference libraries as Python 3.12 wheels
# (bitsandbytes trimmed to its CPU and CUDA 13 libraries, compressed-tensors, ModelOpt and their
# missing dependencies) and the tokenizer oracles' sources (the GGUF part cut to its metadata).
# Then on the device: bash DEST/device_ctest.sh (scripts/device_ctest.sh, copied into DEST).
# Usage: bash scripts/stage_suite_for_device.sh BUILD_DIR DEST   (DEST: an ignored folder to carry)
set -euo pipefail
BUILD=$(realpath "$1"); DEST=$(realpath -m "$2"); source "$(dirname "$0")/env.sh"
T=$(mktemp -d); mkdir -p "$T/build/tests" "$DEST"
bash "$(dirname "$0")/stage_for_gpu.sh" "$BUILD" "$T/bin" >/dev/null  # moeq, moeq_tests, their libraries
mv "$T/bin/moeq" "$T/build/" && mv "$T/bin/moeq_tests" "$T/build/tests/" && mv "$T/bin/lib" "$T/build/lib"
cp "$BUILD/CTestTestfile.cmake" "$T/build/" && cp "$BUILD"/tests/{CTestTestfile.cmake,*_include.cmake,*_tests.cmake} "$T/build/tests/"
(cd "$T" && tar cJf "$(realpath "$DEST")/build.tar.xz" build)
W=$T/wheels; S=$T/site312; mkdir -p "$W" "$S"
"$MOEQ_PYTHON" -m pip download -q --no-deps -d "$W" --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform any \
  bitsandbytes==0.50.2 compressed-tensors==0.20.0 nvidia-modelopt==0.47.0 loguru==0.7.3 pydantic==2.14.4 \
  pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 omegaconf==2.4.0 "pulp<4"
for w in "$W"/*.whl; do python3 -m zipfile -e "$w" "$S"; done  # wheels are zips; no pip for 3.12 here
rm -rf "$S"/bitsandbytes/libbitsandbytes_{cuda1[12]*,rocm*,xpu*}.so "$S"/pulp/solverdir
(cd "$T" && tar cJf "$(realpath "$DEST")/site.tar.xz" site312)
cp -r "$MOEQ_CACHE/tokenizer-sources" "$T/tokenizer-sources"
find "$T/tokenizer-sources" -name '*.gguf.part00' -exec truncate -s 8M {} \;  # metadata (the vocabulary) only
(cd "$T" && tar cJf "$(realpath "$DEST")/tok.tar.xz" tokenizer-sources)
cp "$(dirname "$0")/device_ctest.sh" "$DEST/"
rm -rf "$T"; du -sh "$DEST"
