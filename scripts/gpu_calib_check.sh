#!/usr/bin/env bash
# GPU batch for the native forward, calibration and compare, on binaries staged by
# scripts/stage_for_gpu.sh and tiny checkpoints + forward oracles made by the tests' fixtures
# (build/tiny). Usage: bash scripts/gpu_calib_check.sh BIN TINY OUT
set -uo pipefail
BIN=$(realpath "$1"); TINY=$(realpath "$2"); OUT=$3
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="$BIN/lib:$TL:$TL/../../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
ldd "$BIN/moeq" | grep "not found" && exit 1
M="$BIN/moeq"
{
  echo "== [cuda] tests (formats, compare)"
  "$BIN/moeq_tests" "[cuda]" --reporter compact 2>&1 | tail -4
  echo "== [forward] tests on CUDA (logits, router, amax vs transformers; calibrate vs transformers hooks)"
  MOEQ_TEST_DEVICE=cuda MOEQ_FORWARD_DIR=$TINY MOEQ_TINY_DIR=$TINY MOEQ_CLI=$M "$BIN/moeq_tests" "[forward]" 2>&1 | tail -4
  echo "== moeq calibrate --device cuda -> quantize --calib (nvfp4 W4A4, fp8 W8A8) -> verify"
  for fam in qwen3_moe olmoe mixtral gemma4 deepseek_v3 gpt_oss glm4_moe qwen3_5_moe; do
    W=/tmp/cal-$fam; rm -rf $W; mkdir -p $W
    python3 -c "import sys,numpy as np; from safetensors.numpy import load_file; np.save(sys.argv[2], load_file(sys.argv[1])['ids'])" \
      $TINY/$fam/forward_oracle.safetensors $W/ids.npy
    "$M" calibrate $TINY/$fam/model --data $W/ids.npy --samples 3 --seq-len 24 --device cuda -o $W/calib.h5 > $W/cal.txt 2>&1
    echo "$fam calibrate rc=$?: $(grep -iE 'peak|tokens/s' $W/cal.txt | tr '\n' ' ')"
    for r in nvfp4_experts_only fp8; do
      "$M" quantize $TINY/$fam/model --recipe recipes/$r.yaml --calib $W/calib.h5 --device cuda -o $W/q-$r > $W/q-$r.txt 2>&1
      rq=$?
      "$M" verify $W/q-$r --source $TINY/$fam/model > $W/v-$r.txt 2>&1
      echo "  $r: quantize rc=$rq, verify rc=$? $(tail -1 $W/v-$r.txt)"
    done
  done
  echo "== moeq compare --eval-ids on CUDA vs CPU (qwen3_moe, float32)"
  W=/tmp/cmp; rm -rf $W; mkdir -p $W
  python3 -c "import sys; from safetensors.torch import load_file, save_file; save_file({'ids': load_file(sys.argv[1])['ids']}, sys.argv[2])" \
    $TINY/qwen3_moe/forward_oracle.safetensors $W/ids.safetensors
  for d in cpu cuda; do
    "$M" compare $TINY/qwen3_moe/model --formats fp8,nvfp4,nf4,mxfp4,int4 --eval-ids $W/ids.safetensors --eval-dtype float32 \
      --device $d -o $W/r-$d > $W/c-$d.txt 2>&1; echo "compare $d rc=$?"
  done
  python3 - $W <<'PY'
import json, sys
w = sys.argv[1]
a, b = (json.load(open(f"{w}/r-{d}/report.json")) for d in ("cpu", "cuda"))
def kl(r):
    out = {}
    for v in r.get("variants", []):
        oe = v.get("output_error") or {}
        out[v.get("name")] = oe.get("kl_mean", oe.get("kl"))
    return out
print("KL cpu ", kl(a)); print("KL cuda", kl(b))
PY
  echo "== compare --calib (W4A4 / W8A8 activations from calib.h5) on CUDA vs CPU (demo, bf16)"
  W=/tmp/cc; rm -rf $W; mkdir -p $W
  "$M" make-demo $W/demo > /dev/null && "$M" calibrate $W/demo/qwen3_moe_fused --samples 16 --seq-len 128 --device cuda \
    -o $W/calib.h5 --quiet > /dev/null 2>&1; echo "calibrate rc=$?"
  python3 -c "import torch;from safetensors.torch import save_file;g=torch.Generator().manual_seed(1);save_file({'ids':torch.randint(512,(8,64),generator=g)},'$W/ids.safetensors')"
  for d in cpu cuda; do
    "$M" compare $W/demo/qwen3_moe_fused --recipes recipes/nvfp4_experts_only.yaml recipes/fp8.yaml --calib $W/calib.h5 \
      --eval-ids $W/ids.safetensors --device $d -o $W/cmp_$d > $W/cmp_$d.txt 2>&1; echo "compare --calib $d rc=$?"
    grep -E "^\| (nvfp4|fp8)" $W/cmp_$d/report.md | head -8
  done
  echo "== MSE weight scales (nvfp4_experts_only_mse) on CUDA vs CPU (demo): same bytes, time vs max"
  for d in cpu cuda; do
    for r in nvfp4_experts_only nvfp4_experts_only_mse; do
      t=$(date +%s.%N)
      "$M" quantize $W/demo/qwen3_moe_fused --recipe recipes/$r.yaml --weight-only --device $d -o $W/q-$r-$d > /dev/null 2>&1
      echo "$r $d rc=$? $(awk "BEGIN{print $(date +%s.%N)-$t}") s; verify: $("$M" verify $W/q-$r-$d --source $W/demo/qwen3_moe_fused 2>&1 | grep -E 'SQNR|OK|problem' | head -2 | tr '\n' ' ')"
    done
  done
  for f in $W/q-nvfp4_experts_only_mse-cpu/*.safetensors; do
    cmp "$f" "$W/q-nvfp4_experts_only_mse-cuda/$(basename "$f")" && echo "mse cpu == cuda: $(basename "$f")"
  done
} 2>&1 | tee "$OUT/calib_check.txt"
