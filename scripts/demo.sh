#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on the embedded default model
# (moeq writes a small deterministic Qwen3-MoE checkpoint in both expert layouts, then
# inspects each).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
moeq_configure_and_build -DMOEQ_BUILD_TESTS=OFF
./$MOEQ_BUILD/moeq make-demo demo --overwrite
./$MOEQ_BUILD/moeq inspect demo/qwen3_moe_fused --summary
./$MOEQ_BUILD/moeq inspect demo/qwen3_moe_per_expert
