#!/usr/bin/env bash
# What a user meets on the first day, as a user runs it: kill -9 during quantize then a
# rerun, a full disk, output == source, output inside the source through a symlink, a
# read-only source, two writers into one output, corrupt inputs. Every case checks the exit
# code, the one-line error and that the source is byte-identical afterwards (sha256).
# Usage: reliability.sh MOEQ WORK_DIR RECIPES_DIR. Prints `N passed, N failed, N skipped`.
set -uo pipefail
MOEQ=$1; WORK=$2; RECIPES=$3
RECIPE=$RECIPES/nvfp4_experts_only.yaml
umount "$WORK/small" 2>/dev/null; chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"; mkdir -p "$WORK"
trap 'umount "$WORK/small" 2>/dev/null; chmod -R u+w "$WORK" 2>/dev/null' EXIT
passed=0; failed=0; skipped=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
tree_sha() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64); }
no_leftovers() { ! ls -d "$1".tmp-* "$1".old-* "$1".lock >/dev/null 2>&1; }

"$MOEQ" make-demo "$WORK/demo" --layers 2 --experts 8 >/dev/null || { echo "make-demo failed"; exit 1; }
SRC=$WORK/demo/qwen3_moe_fused
SRC_SHA=$(tree_sha "$SRC")
quantize() { "$MOEQ" quantize "$@" --recipe "$RECIPE" --weight-only; }  # (background runs call $MOEQ: $! is its pid)

# expect NAME RC PATTERN SOURCE_DIR -- command...: exit code RC, one line on stderr that
# matches PATTERN (grep -E), SOURCE_DIR byte-identical afterwards.
expect() {
  local name=$1 rc=$2 pattern=$3 src=$4; shift 5
  local before got err
  before=$(tree_sha "$src")
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; got=$?
  err=$(cat "$WORK/$name.err")
  if [ "$got" != "$rc" ]; then fail "$name" "exit $got, expected $rc: $err"; return 1; fi
  # Failures: exactly one error line, the last one (progress lines may come before it).
  if [ "$rc" != 0 ]; then
    if [ "$(grep -c 'error:' "$WORK/$name.err")" != 1 ] || ! tail -1 "$WORK/$name.err" | grep -q 'error:'; then
      fail "$name" "not one error line at the end: $err"; return 1
    fi
    err=$(tail -1 "$WORK/$name.err")
  fi
  if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" <<<"$err"; then fail "$name" "stderr lacks /$pattern/: $err"; return 1; fi
  if [ "$(tree_sha "$src")" != "$before" ]; then fail "$name" "$src changed"; return 1; fi
  pass "$name"
}

# --- output == source, inside it, around it, through symlinks
expect out_is_source 1 "is the source checkpoint" "$SRC" -- quantize "$SRC" -o "$SRC" --overwrite
ln -s "$SRC" "$WORK/alias"
expect out_is_source_via_symlink 1 "is the source checkpoint" "$SRC" -- quantize "$SRC" -o "$WORK/alias" --overwrite
expect out_inside_source_via_symlink 1 "lies inside the source checkpoint" "$SRC" -- quantize "$SRC" -o "$WORK/alias/q"
expect out_contains_source 1 "contains the source checkpoint" "$SRC" -- quantize "$SRC" -o "$WORK/demo" --overwrite
expect calib_out_inside_source 1 "lies inside the source checkpoint" "$SRC" -- \
  "$MOEQ" calibrate "$WORK/alias" --data "$WORK/none.jsonl" -o "$SRC/calib.h5"

# --- --overwrite only replaces moeq's own output
mkdir -p "$WORK/userdir"; echo "user data" >"$WORK/userdir/precious"
expect overwrite_foreign_dir 1 "no \.moeq-export marker" "$WORK/userdir" -- quantize "$SRC" -o "$WORK/userdir" --overwrite

# --- kill -9 while overwriting an export, then a rerun
OUT=$WORK/export
expect first_export 0 "" "$SRC" -- quantize "$SRC" -o "$OUT"
OLD_SHA=$(tree_sha "$OUT")
killed=0
for attempt in 1 2 3 4 5; do
  "$MOEQ" quantize "$SRC" -o "$OUT" --overwrite --recipe "$RECIPE" --weight-only >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 2000); do ls -d "$OUT".tmp-* >/dev/null 2>&1 && break; kill -0 $pid 2>/dev/null || break; sleep 0.005; done
  if kill -9 $pid 2>/dev/null; then wait $pid 2>/dev/null; killed=1; break; fi
  wait $pid 2>/dev/null
done
if [ $killed = 0 ]; then
  skip kill9_during_quantize "quantize finished before it could be killed (5 tries)"
elif ! ls -d "$OUT".tmp-* >/dev/null 2>&1; then
  skip kill9_during_quantize "killed before its temporary existed"
elif [ "$(tree_sha "$OUT")" != "$OLD_SHA" ]; then
  fail kill9_during_quantize "the previous export changed"
else
  pass kill9_keeps_previous_export
  if expect kill9_rerun_removes_stale 0 "removed 1 stale temporary of a dead moeq run beside .*export.tmp-" "$SRC" -- \
       quantize "$SRC" -o "$OUT" --overwrite; then
    if no_leftovers "$OUT" && [ -f "$OUT/.moeq-export" ] && "$MOEQ" verify "$OUT" >/dev/null 2>&1; then pass kill9_rerun_clean_export
    else fail kill9_rerun_clean_export "leftovers beside $OUT or the export does not verify"; fi
  fi
fi

# --- concurrent writers: the second fails naming the holder's pid
"$MOEQ" quantize "$SRC" -o "$WORK/conc" --recipe "$RECIPE" --weight-only >/dev/null 2>&1 &
holder=$!
# -s: the holder has written its pid (it creates the file first, then locks and writes)
for _ in $(seq 2000); do [ -s "$WORK/conc.lock" ] && break; kill -0 $holder 2>/dev/null || break; sleep 0.005; done
if kill -STOP $holder 2>/dev/null && [ -s "$WORK/conc.lock" ]; then
  expect concurrent_writer 1 "another moeq run \(pid $holder\) is writing this output" "$SRC" -- quantize "$SRC" -o "$WORK/conc"
  kill -CONT $holder
  if wait $holder && [ -f "$WORK/conc/.moeq-export" ] && no_leftovers "$WORK/conc"; then pass concurrent_holder_completes
  else fail concurrent_holder_completes "the first writer did not finish cleanly"; fi
else
  kill -CONT $holder 2>/dev/null; wait $holder
  skip concurrent_writer "the first writer finished before it could be paused"
fi

# --- disk full: a real ENOSPC on a small tmpfs when this host lets us mount one
mkdir -p "$WORK/small"
if mount -t tmpfs -o size=256k tmpfs "$WORK/small" 2>"$WORK/mount.err"; then
  expect disk_full_enospc 1 "No space left on device" "$SRC" -- quantize "$SRC" -o "$WORK/small/q"
  if no_leftovers "$WORK/small/q" && [ ! -e "$WORK/small/q" ]; then pass disk_full_leaves_nothing
  else fail disk_full_leaves_nothing "$(ls -a "$WORK/small")"; fi
  umount "$WORK/small"
else
  skip disk_full_enospc "cannot mount a tmpfs here ($(head -1 "$WORK/mount.err")); ran the ulimit -f (EFBIG) fallback instead"
  expect disk_full_efbig_fallback 1 "File too large" "$SRC" -- bash -c "trap '' XFSZ; ulimit -f 256; \"\$0\" quantize \"\$1\" \
    -o \"\$2\" --recipe \"\$3\" --weight-only" "$MOEQ" "$SRC" "$WORK/small/q" "$RECIPE"
  if no_leftovers "$WORK/small/q" && [ ! -e "$WORK/small/q" ]; then pass disk_full_leaves_nothing
  else fail disk_full_leaves_nothing "$(ls -a "$WORK/small")"; fi
fi

# --- read-only source: reading works, writing into it is refused by moeq itself (root
# ignores file modes, so the refusal must not rely on them)
cp -a "$SRC" "$WORK/ro"; chmod -R a-w "$WORK/ro"
expect readonly_source_quantize 0 "" "$WORK/ro" -- quantize "$WORK/ro" -o "$WORK/ro-out"
expect readonly_source_out_inside 1 "lies inside the source checkpoint" "$WORK/ro" -- quantize "$WORK/ro" -o "$WORK/ro/q"
if [ "$(id -u)" = 0 ]; then
  skip readonly_output_parent "running as root: file modes do not stop writes, nothing to test"
else
  mkdir -p "$WORK/rodir"; chmod a-w "$WORK/rodir"
  expect readonly_output_parent 1 "cannot create the lock file.*Permission denied" "$SRC" -- quantize "$SRC" -o "$WORK/rodir/q"
fi
chmod -R u+w "$WORK/ro"

# --- corrupt inputs: one-line errors naming the file, inputs unchanged
cp -a "$SRC" "$WORK/trunc"
size=$(stat -c %s "$WORK/trunc/model.safetensors"); truncate -s $((size / 2)) "$WORK/trunc/model.safetensors"
expect truncated_shard 1 "model\.safetensors" "$WORK/trunc" -- quantize "$WORK/trunc" -o "$WORK/trunc-out"
cp -a "$SRC" "$WORK/badcfg"; echo '{"model_type": "qwen3_moe",' >"$WORK/badcfg/config.json"
expect bad_config_json 1 "config\.json" "$WORK/badcfg" -- quantize "$WORK/badcfg" -o "$WORK/badcfg-out"
printf 'rules:\n  - roles: [experts]\n    fromat: nvfp4\n' >"$WORK/bad.yaml"
expect bad_recipe 1 "bad\.yaml" "$SRC" -- "$MOEQ" quantize "$SRC" --recipe "$WORK/bad.yaml" -o "$WORK/badrecipe-out"
for o in trunc-out badcfg-out badrecipe-out; do
  if [ -e "$WORK/$o" ] || ! no_leftovers "$WORK/$o"; then fail corrupt_inputs_leave_nothing "$o"; continue 2; fi
done
pass corrupt_inputs_leave_nothing

if [ "$(tree_sha "$SRC")" = "$SRC_SHA" ]; then pass source_identical_at_end; else fail source_identical_at_end "$SRC changed"; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
