#!/usr/bin/env bash
# Stages the head-to-head for the GPU machine (no network there; Python 3.12): moeq and its
# libraries (scripts/stage_for_gpu.sh), the trained model and its text from ../shared, and the
# peers as unpacked wheels: nvidia-modelopt 0.47 with compressed-tensors 0.20 (site312), and
# llm-compressor 0.14.0.1 with compressed-tensors 0.19 and datasets (site-llmc). About 55 MB.
# Usage: bash scripts/quality/stage_h2h_for_device.sh BUILD_DIR DEST   (DEST: an ignored folder)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd); BUILD=$(realpath "$1"); DEST=$(realpath -m "$2")
SHARED=${MOEQ_SHARED:-$ROOT/../shared}; source "$ROOT/scripts/env.sh"
T=$(mktemp -d); mkdir -p "$DEST"
bash "$ROOT/scripts/stage_for_gpu.sh" "$BUILD" "$T/gpu-bin" >/dev/null; rm -f "$T/gpu-bin/moeq_tests"
(cd "$T" && tar cJf "$DEST/moeq.tar.xz" gpu-bin)
mkdir -p "$T/shared/models" && cp -r "$SHARED/models/qwen3moe-tiny" "$T/shared/models/" && cp -r "$SHARED/data" "$T/shared/"
(cd "$T" && tar cJf "$DEST/model.tar.xz" shared)
get() { local d=$1; shift; mkdir -p "$T/w-$d" "$T/$d"
  "$MOEQ_PYTHON" -m pip download -q --no-deps -d "$T/w-$d" --python-version 3.12 --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any "$@"
  for w in "$T/w-$d"/*.whl; do python3 -m zipfile -e "$w" "$T/$d"; done; }
get site312 compressed-tensors==0.20.0 nvidia-modelopt==0.47.0 loguru==0.7.3 pydantic==2.14.4 \
  pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 omegaconf==2.4.0 "pulp<4"
rm -rf "$T/site312/pulp/solverdir"
get site-llmc llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru==0.7.3 datasets==4.8.4 "dill<0.4.1" \
  "multiprocess<0.70.19" pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
(cd "$T" && tar cJf "$DEST/site.tar.xz" site312 site-llmc)
cp "$ROOT/scripts/quality/device_h2h.sh" "$DEST/"
rm -rf "$T"; du -sh "$DEST"
