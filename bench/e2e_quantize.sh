#!/usr/bin/env bash
# End-to-end weight-only NVFP4 export of a random-initialized, real-shaped checkpoint held in
# tmpfs, against the byte-moving floor and today's tools. Prints one table (seconds).
#   floor:  `cat` of the input safetensors to /dev/null + `dd` writing as many bytes as moeq's output
#   moeq:   moeq quantize --recipe recipes/nvfp4_experts_only.yaml --weight-only --device cuda (twice,
#           streamed export), then once with MOEQ_BUFFERED_EXPORT=1 (shards buffered and written
#           when full, as before) into another directory, compared byte for byte with the first
#   torch:  transformers load + torch-op NVFP4 of the expert weights on the GPU + safetensors save
#           (olmoe only: Gemma-4's 51 GB would not fit host RAM beside the tmpfs)
# Usage: bash bench/e2e_quantize.sh MOEQ_BINARY RESULTS_DIR [olmoe|gemma4|olmoe-mini|gemma4-mini] [--no-torch]
# Each phase's files are dropped when it is done. MOEQ_E2E_GB: tmpfs size needed (olmoe 40,
# gemma4 100); a smaller /dev/shm is remounted larger, else a tmpfs of our own is mounted.
# (MOEQ_DEVICE=cpu runs moeq on the CPU: a smoke test of the script on a machine without a GPU)
set -uo pipefail
MOEQ=$1; RES=$2; FAMILY=${3:-olmoe}; NO_TORCH=${4:-}
cd "$(dirname "$0")/.."
mkdir -p "$RES"
case $FAMILY in gemma4) default_gb=100;; *) default_gb=40;; esac
need_gb=${MOEQ_E2E_GB:-$default_gb}
avail_gb() { df --output=avail -BG "$1" | tail -1 | tr -dc 0-9; }
ROOT=/dev/shm/moeq-e2e
if [ "$(avail_gb /dev/shm)" -lt "$need_gb" ]; then  # too small: grow /dev/shm, or mount a tmpfs of our own
  mount -o remount,size=$(( need_gb + 8 ))G /dev/shm 2>/dev/null
  if [ "$(avail_gb /dev/shm)" -lt "$need_gb" ]; then
    ROOT=/tmp/moeq-e2e-tmpfs; mkdir -p $ROOT; mount -t tmpfs -o size=${need_gb}G tmpfs $ROOT || exit 1
  fi
fi
mkdir -p "$ROOT"; df -h "$ROOT" | tee -a "$RES/e2e.txt"
SRC=$ROOT/$FAMILY; OUT=$ROOT/out; OUTB=$ROOT/out-buffered
rm -rf "$SRC" "$OUT" "$OUTB" "$ROOT"/torch.safetensors "$ROOT"/dd.bin
a=$(date +%s.%N)
python3 bench/make_random_checkpoint.py "$FAMILY" "$SRC" 2>&1 | tee -a "$RES/e2e.txt" || exit 1
echo "checkpoint written in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $a }") s (with python start)" | tee -a "$RES/e2e.txt"
in_bytes=$(cat "$SRC"/*.safetensors | wc -c)
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
secs() { local a=$(date +%s.%N); "$@" > /tmp/moeq_e2e_stdout.txt 2>>"$RES/e2e_err.txt"; local rc=$?; local b=$(date +%s.%N); echo "$(calc "$b - $a") $rc"; }
read t_cat _ < <(secs bash -c "cat $SRC/*.safetensors > /dev/null")
q=("$MOEQ" quantize "$SRC" --recipe recipes/nvfp4_experts_only.yaml --weight-only --device "${MOEQ_DEVICE:-cuda}" --overwrite)
echo "== $FAMILY" >> "$RES/e2e_err.txt"
read t_moeq1 rc1 < <(secs "${q[@]}" -o "$OUT")
read t_moeq2 rc2 < <(secs "${q[@]}" -o "$OUT")
tail -1 /tmp/moeq_e2e_stdout.txt | tee -a "$RES/e2e.txt"
read t_buf rcb < <(secs env MOEQ_BUFFERED_EXPORT=1 "${q[@]}" -o "$OUTB")
same=identical
for f in "$OUT"/*; do
  case $(basename "$f") in report.*) continue;; esac
  cmp -s "$f" "$OUTB/$(basename "$f")" || same="DIFFERENT ($(basename "$f"))"
done
rm -rf "$OUTB"
if [ -n "${MOEQ_BEFORE:-}" ]; then  # another build (e.g. main's), timed once on the same input
  read t_before rcB < <(secs "$MOEQ_BEFORE" quantize "$SRC" --recipe recipes/nvfp4_experts_only.yaml --weight-only \
    --device "${MOEQ_DEVICE:-cuda}" --overwrite -o "$OUTB")
  rm -rf "$OUTB"
fi
out_bytes=$(cat "$OUT"/*.safetensors | wc -c)
rm -rf "$OUT"
read t_dd _ < <(secs dd if=/dev/zero of=$ROOT/dd.bin bs=1M count=$(( out_bytes / 1048576 )))
rm -f $ROOT/dd.bin
t_floor=$(calc "$t_cat + $t_dd")
{
  echo "$FAMILY: input $(calc "$in_bytes / 1e9") GB, moeq output $(calc "$out_bytes / 1e9") GB"
  printf "%-44s %8.2f s\n" "cat input > /dev/null" "$t_cat" "dd output-sized file" "$t_dd" "byte-moving floor (cat + dd)" "$t_floor"
  printf "%-44s %8.2f s  (rc %s, %.2fx floor)\n" "moeq quantize, run 1" "$t_moeq1" "$rc1" "$(calc "$t_moeq1 / $t_floor")"
  printf "%-44s %8.2f s  (rc %s, %.2fx floor)\n" "moeq quantize, run 2" "$t_moeq2" "$rc2" "$(calc "$t_moeq2 / $t_floor")"
  printf "%-44s %8.2f s  (rc %s, %.2fx floor; files %s)\n" "moeq quantize, MOEQ_BUFFERED_EXPORT=1" "$t_buf" "$rcb" \
    "$(calc "$t_buf / $t_floor")" "$same"
  [ -n "${t_before:-}" ] && printf "%-44s %8.2f s  (rc %s, %.2fx floor)\n" "moeq quantize, $MOEQ_BEFORE" "$t_before" "$rcB" \
    "$(calc "$t_before / $t_floor")"
} | tee -a "$RES/e2e.txt"
if [ "$NO_TORCH" != "--no-torch" ] && [ "${FAMILY#gemma4}" = "$FAMILY" ]; then
  a=$(date +%s.%N)
  timeout 150 python3 bench/e2e_torch_baseline.py "$SRC" "$ROOT/torch.safetensors" 2>>"$RES/e2e_err.txt" | tee -a "$RES/e2e.txt"
  rc=$?; b=$(date +%s.%N)
  printf "%-44s %8.2f s  (rc %s, %.2fx floor)\n" "transformers load + torch-op NVFP4 + save" "$(calc "$b - $a")" "$rc" \
    "$(calc "($b - $a) / $t_floor")" | tee -a "$RES/e2e.txt"
  rm -f "$ROOT"/torch.safetensors
fi
rm -rf "$SRC"
sed -n "/^== $FAMILY\$/,\$p" "$RES/e2e_err.txt" | grep "moeq timing" | tee -a "$RES/e2e.txt"
