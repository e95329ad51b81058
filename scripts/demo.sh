#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on the embedded default model
# (moeq writes a small deterministic Qwen3-MoE checkpoint in both expert layouts, inspects
# each, quantizes the experts to NVFP4, verifies the export and prints the report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
moeq_configure_and_build -DMOEQ_BUILD_TESTS=OFF
./$MOEQ_BUILD/moeq make-demo demo --overwrite
./$MOEQ_BUILD/moeq inspect demo/qwen3_moe_fused --summary
./$MOEQ_BUILD/moeq inspect demo/qwen3_moe_per_expert --summary
# Quantize the fused layout's experts to NVFP4 (weight-only: no calibration data here),
# verify every expert against the source, and show the skipped-layers report.
./$MOEQ_BUILD/moeq quantize demo/qwen3_moe_fused --recipe recipes/nvfp4_experts_only.yaml --weight-only \
  -o demo/qwen3_moe_nvfp4 --overwrite
./$MOEQ_BUILD/moeq verify demo/qwen3_moe_nvfp4 --source demo/qwen3_moe_fused
./$MOEQ_BUILD/moeq report demo/qwen3_moe_nvfp4 | sed -n 1,25p  # sed reads it all: no SIGPIPE under pipefail
