#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on the embedded default model
# (moeq writes a small deterministic Qwen3-MoE checkpoint in both expert layouts, inspects
# each, calibrates it on the embedded default data (synthetic ids: the demo has no
# tokenizer.json), quantizes the experts to NVFP4 W4A4 with those input scales, verifies the
# export and prints the report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
moeq_configure_and_build -DMOEQ_BUILD_TESTS=OFF
./$MOEQ_BUILD/moeq make-demo demo --overwrite
./$MOEQ_BUILD/moeq inspect demo/qwen3_moe_fused --summary
./$MOEQ_BUILD/moeq inspect demo/qwen3_moe_per_expert --summary
# Calibrate (native forward, per-expert input amax, calib.h5), quantize the fused layout's
# experts to NVFP4 W4A4 with those input scales, verify every expert against the source, and
# show the skipped-layers report (with its calibration coverage section).
./$MOEQ_BUILD/moeq calibrate demo/qwen3_moe_fused --samples 16 --seq-len 128 -o demo/calib.h5
./$MOEQ_BUILD/moeq quantize demo/qwen3_moe_fused --recipe recipes/nvfp4_experts_only.yaml --calib demo/calib.h5 \
  -o demo/qwen3_moe_nvfp4 --overwrite
./$MOEQ_BUILD/moeq verify demo/qwen3_moe_nvfp4 --source demo/qwen3_moe_fused
./$MOEQ_BUILD/moeq report demo/qwen3_moe_nvfp4 | sed -n 1,45p  # sed reads it all: no SIGPIPE under pipefail
