#!/usr/bin/env bash
# End to end from a quantized source: weight-only NVFP4 of the routed experts of DeepSeek-V3-shaped
# layers at real dimensions, stored as published (FP8 block 128, F32 weight_scale_inv), against
# the byte-moving floor measured in the same run. Prints one table (seconds).
#   input:  bench/make_random_checkpoint.py deepseek-v3: 3 layers (1 dense, 2 MoE of 256 experts
#           of 2048, hidden 7168, MLA attention), embed_tokens and lm_head, ~27 GB, in tmpfs
#   floor:  files:  `cat` of the input to /dev/null + `dd` writing as many bytes as moeq's output
#           PCIe:   the bytes moeq sends to the device / host-to-device bandwidth + the bytes it
#                   copies back / device-to-host bandwidth (both measured here: torch copies of
#                   4 GiB between pinned host memory and the GPU); moeq prints its byte counts
#                   (MOEQ_TIMING=1)
#           floor = max(files, PCIe): the stages overlap, so the slower of the two bounds it
#   moeq:   moeq quantize --recipe recipes/nvfp4_experts_only.yaml --weight-only --device cuda,
#           twice (streamed export; the source decoded on the device)
#   MOEQ_BEFORE=BINARY: that build too, timed once on the same input (e.g. main's, which decodes on
#           the host and uploads bf16)
# Usage: bash bench/e2e_source_quantize.sh MOEQ_BINARY RESULTS_DIR [deepseek-v3|deepseek-v3-mini]
# (MOEQ_DEVICE=cpu: moeq on the CPU, a smoke test of the script without a GPU; MOEQ_E2E_GB: the
# tmpfs size needed, default 60)
set -uo pipefail
MOEQ=$1; RES=$2; FAMILY=${3:-deepseek-v3}
cd "$(dirname "$0")/.."
mkdir -p "$RES"
LOG=$RES/e2e_source.txt; ERR=$RES/e2e_source_err.txt
need_gb=${MOEQ_E2E_GB:-60}
avail_gb() { df --output=avail -BG "$1" | tail -1 | tr -dc 0-9; }
ROOT=/dev/shm/moeq-e2e-source
if [ "$(avail_gb /dev/shm)" -lt "$need_gb" ]; then  # too small: grow /dev/shm, or mount a tmpfs of our own
  mount -o remount,size=$(( need_gb + 8 ))G /dev/shm 2>/dev/null
  if [ "$(avail_gb /dev/shm)" -lt "$need_gb" ]; then
    ROOT=/tmp/moeq-e2e-source-tmpfs; mkdir -p $ROOT; mount -t tmpfs -o size=${need_gb}G tmpfs $ROOT || exit 1
  fi
fi
mkdir -p "$ROOT"; df -h "$ROOT" | tee -a "$LOG"
SRC=$ROOT/$FAMILY; OUT=$ROOT/out; OUTB=$ROOT/out-before
rm -rf "$SRC" "$OUT" "$OUTB" "$ROOT"/dd.bin
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
a=$(date +%s.%N)
python3 bench/make_random_checkpoint.py "$FAMILY" "$SRC" 2>&1 | tee -a "$LOG" || exit 1
echo "checkpoint written in $(calc "$(date +%s.%N) - $a") s (with python start)" | tee -a "$LOG"
in_bytes=$(cat "$SRC"/*.safetensors | wc -c)
secs() { local a=$(date +%s.%N); "$@" > /tmp/moeq_e2e_source_stdout.txt 2>>"$ERR"; local rc=$?; local b=$(date +%s.%N); echo "$(calc "$b - $a") $rc"; }
read t_cat _ < <(secs bash -c "cat $SRC/*.safetensors > /dev/null")
# PCIe bandwidth, pinned host memory <-> GPU, GB/s (0 0 without a GPU)
read h2d d2h < <(python3 - <<'EOF' 2>>"$ERR"
import time, torch
if not torch.cuda.is_available():
    print(0, 0); raise SystemExit
n = 4 << 30
h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
d = torch.empty(n, dtype=torch.uint8, device="cuda")
def rate(dst, src, reps=3):
    dst.copy_(src, non_blocking=True); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    return reps * n / (time.perf_counter() - t) / 1e9
print(f"{rate(d, h):.2f} {rate(h, d):.2f}")
EOF
)
echo "PCIe (pinned, 4 GiB copies): host-to-device ${h2d:-?} GB/s, device-to-host ${d2h:-?} GB/s" | tee -a "$LOG"
q=("$MOEQ" quantize "$SRC" --recipe recipes/nvfp4_experts_only.yaml --weight-only --device "${MOEQ_DEVICE:-cuda}" --overwrite)
echo "== $FAMILY" >> "$ERR"
read t_moeq1 rc1 < <(secs env MOEQ_TIMING=1 "${q[@]}" -o "$OUT")
read t_moeq2 rc2 < <(secs env MOEQ_TIMING=1 "${q[@]}" -o "$OUT")
tail -1 /tmp/moeq_e2e_source_stdout.txt | tee -a "$LOG"
timing=$(sed -n "/^== $FAMILY\$/,\$p" "$ERR" | grep "moeq timing" | tail -1)
up_gb=$(sed -n 's/.*to the device \([0-9.]*\) GB.*/\1/p' <<< "$timing"); up_gb=${up_gb:-0}
down_gb=$(sed -n 's/.*back \([0-9.]*\) GB.*/\1/p' <<< "$timing"); down_gb=${down_gb:-0}
out_bytes=$(cat "$OUT"/*.safetensors | wc -c)
rm -rf "$OUT"
if [ -n "${MOEQ_BEFORE:-}" ]; then  # another build (e.g. main's), timed once on the same input
  read t_before rcB < <(secs env MOEQ_TIMING=1 "$MOEQ_BEFORE" quantize "$SRC" --recipe recipes/nvfp4_experts_only.yaml \
    --weight-only --device "${MOEQ_DEVICE:-cuda}" --overwrite -o "$OUTB")
  rm -rf "$OUTB"
fi
read t_dd _ < <(secs dd if=/dev/zero of=$ROOT/dd.bin bs=1M count=$(( out_bytes / 1048576 )))
rm -f $ROOT/dd.bin
t_files=$(calc "$t_cat + $t_dd")
if [ "${h2d%%.*}" -gt 0 ] 2>/dev/null; then
  t_pcie=$(calc "$up_gb / $h2d + $down_gb / $d2h")
else
  t_pcie=0
fi
t_floor=$(awk "BEGIN { a = $t_files; b = $t_pcie; printf \"%.3f\", (a > b ? a : b) }")
{
  echo "$FAMILY: input $(calc "$in_bytes / 1e9") GB, moeq output $(calc "$out_bytes / 1e9") GB; to the device $up_gb GB, back $down_gb GB"
  printf "%-48s %8.2f s\n" "cat input > /dev/null" "$t_cat" "dd output-sized file" "$t_dd" "files floor (cat + dd)" "$t_files"
  printf "%-48s %8.2f s\n" "PCIe floor (to / H2D + back / D2H)" "$t_pcie" "byte-moving floor = max(files, PCIe)" "$t_floor"
  printf "%-48s %8.2f s  (rc %s, %.2fx floor)\n" "moeq quantize --device cuda, run 1" "$t_moeq1" "$rc1" "$(calc "$t_moeq1 / $t_floor")"
  printf "%-48s %8.2f s  (rc %s, %.2fx floor)\n" "moeq quantize --device cuda, run 2" "$t_moeq2" "$rc2" "$(calc "$t_moeq2 / $t_floor")"
  [ -n "${t_before:-}" ] && printf "%-48s %8.2f s  (rc %s, %.2fx floor)\n" "moeq quantize, $MOEQ_BEFORE" "$t_before" "$rcB" \
    "$(calc "$t_before / $t_floor")"
} | tee -a "$LOG"
rm -rf "$SRC"
sed -n "/^== $FAMILY\$/,\$p" "$ERR" | grep "moeq timing" | tee -a "$LOG"
