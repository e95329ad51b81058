#!/usr/bin/env bash
# README command 1: set up, build, and run the main job. With the trained Qwen3-MoE and its
# text beside the clone (../shared/models/qwen3moe-tiny, ../shared/data): inspect it, calibrate
# on calib.jsonl, quantize the experts to NVFP4 W4A4 with those input scales, verify the export
# against the source, and measure the perplexity of the source and of the export's
# fake-quantized model (weights and activations as the export quantizes them) on held-out
# eval.jsonl. Without them it says so and runs the same job on the generated demo checkpoint
# (moeq make-demo: deterministic random weights, synthetic calibration ids).
# Outputs go under demo/ (../shared is read-only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
moeq_configure_and_build -DMOEQ_BUILD_TESTS=OFF
MOEQ=./$MOEQ_BUILD/moeq
SHARED=${MOEQ_SHARED:-../shared}
MODEL=$SHARED/models/qwen3moe-tiny
DATA=$SHARED/data
mkdir -p demo
if [ -f "$MODEL/config.json" ] && [ -f "$DATA/calib.jsonl" ] && [ -f "$DATA/eval.jsonl" ]; then
  echo "[demo] trained model $MODEL with $DATA/calib.jsonl and $DATA/eval.jsonl"
  $MOEQ inspect "$MODEL" --summary
  # Calibration: 32 samples x 256 tokens of calib.jsonl (per-expert input amax -> calib.h5).
  $MOEQ calibrate "$MODEL" --data "$DATA/calib.jsonl" --samples 32 --seq-len 256 -o demo/calib.h5
  $MOEQ quantize "$MODEL" --recipe recipes/nvfp4_experts_only.yaml --calib demo/calib.h5 \
    -o demo/qwen3moe-tiny-nvfp4 --overwrite
  $MOEQ verify demo/qwen3moe-tiny-nvfp4 --source "$MODEL"
  $MOEQ report demo/qwen3moe-tiny-nvfp4 | sed -n 1,30p  # sed reads it all: no SIGPIPE under pipefail
  # Perplexity on held-out text (16 x 512 tokens of eval.jsonl): source vs the export's
  # fake-quantized model, with the export's input scales (W4A4) and weights only.
  $MOEQ compare "$MODEL" --recipes recipes/nvfp4_experts_only.yaml --calib demo/calib.h5 \
    --eval "$DATA/eval.jsonl" --eval-samples 16 --eval-seq-len 512 -o demo/compare
else
  echo "[demo] $MODEL or $DATA/{calib,eval}.jsonl not found: falling back to the generated demo checkpoint" \
       "(random weights, synthetic calibration ids; no perplexity)"
  $MOEQ make-demo demo --overwrite
  $MOEQ inspect demo/qwen3_moe_fused --summary
  $MOEQ inspect demo/qwen3_moe_per_expert --summary
  $MOEQ calibrate demo/qwen3_moe_fused --samples 16 --seq-len 128 -o demo/calib.h5
  $MOEQ quantize demo/qwen3_moe_fused --recipe recipes/nvfp4_experts_only.yaml --calib demo/calib.h5 \
    -o demo/qwen3_moe_nvfp4 --overwrite
  $MOEQ verify demo/qwen3_moe_nvfp4 --source demo/qwen3_moe_fused
  $MOEQ report demo/qwen3_moe_nvfp4 | sed -n 1,45p
fi
