#!/usr/bin/env bash
# The command line as a user meets it: every subcommand answers --help and -h (usage, every
# option with its default, an example; exit 0), bad command lines are one line and exit 2, a
# user error exits 1, and `quantize --dry-run` prints the plan and writes nothing.
set -uo pipefail
MOEQ=$1; OUT=$2; SRC=$3
rm -rf "$OUT"; mkdir -p "$OUT"
fail=0; checks=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
expect_rc() {  # expect_rc CODE ARGS...: runs moeq ARGS, stdout/stderr into $OUT/last.{out,err}
  local want=$1; shift
  checks=$((checks + 1))
  "$MOEQ" "$@" > "$OUT/last.out" 2> "$OUT/last.err"
  local rc=$?
  [ "$rc" = "$want" ] || bad "moeq $* exited $rc, expected $want: $(head -c 300 "$OUT/last.err")"
}
one_line_err() {
  [ "$(wc -l < "$OUT/last.err")" = 1 ] || bad "moeq $*: stderr is not one line: $(cat "$OUT/last.err")"
}

"$MOEQ" make-demo "$OUT/demo" --layers 2 --experts 8 > /dev/null || { echo "make-demo failed"; exit 1; }
M=$OUT/demo/qwen3_moe_fused
for cmd in inspect calibrate quantize verify report compare make-demo "bench formats" "bench calibrate"; do
  for h in --help -h; do
    # shellcheck disable=SC2086
    expect_rc 0 $cmd $h
    grep -q "^Usage: moeq $cmd" "$OUT/last.out" || bad "moeq $cmd $h: no usage line"
    grep -q "^Example:" "$OUT/last.out" || bad "moeq $cmd $h: no example"
    grep -q -- "--o\b" "$OUT/last.out" && bad "moeq $cmd $h lists --o"
    # every option line (two-space indent, a dash) but --help states its default
    grep -E '^  -' "$OUT/last.out" | grep -v -- '--help' | grep -v -E '\(default: [^)]*\)' \
      | sed "s/^/moeq $cmd: no default: /" > "$OUT/nodefault.txt"
    [ -s "$OUT/nodefault.txt" ] && bad "$(cat "$OUT/nodefault.txt")"
  done
done
# 2: usage
expect_rc 2 quantize "$M" --bogus; one_line_err quantize --bogus
grep -q -- "--bogus" "$OUT/last.err" || bad "the unknown option is not named: $(cat "$OUT/last.err")"
expect_rc 2 calibrate "$M" -o "$OUT/c.h5" --samples 0; one_line_err calibrate --samples 0
expect_rc 2 quantize "$M" --recipe "$SRC/recipes/fp8.yaml"; one_line_err quantize without -o
expect_rc 2 quantize "$M" --recipe "$SRC/recipes/fp8.yaml" -o "$OUT/q" --device tpu; one_line_err --device tpu
expect_rc 2 compare "$M" --formats fp8 -o "$OUT/r" --within-db x; one_line_err --within-db x
expect_rc 2 make-demo "$OUT/d2" --seed abc; one_line_err --seed abc
expect_rc 2 bench formats --shape 1,2; one_line_err --shape 1,2
expect_rc 2 nosuchcommand; one_line_err nosuchcommand
expect_rc 2
# 1: user error
expect_rc 1 inspect "$OUT/nope"; one_line_err inspect of a missing dir
expect_rc 1 quantize "$M" --recipe "$OUT/none.yaml" -o "$OUT/q"; one_line_err a missing recipe
# 0, and --dry-run writes nothing
expect_rc 0 --help
expect_rc 0 quantize "$M" --recipe "$SRC/recipes/nvfp4_experts_only.yaml" --weight-only -o "$OUT/dry" --dry-run
cp "$OUT/last.out" "$OUT/dry_run.txt"
[ -e "$OUT/dry" ] && bad "--dry-run wrote $OUT/dry"
ls -d "$OUT"/dry.tmp-* 2> /dev/null && bad "--dry-run left a temporary directory"
sites=$(grep -c '^layers\.' "$OUT/dry_run.txt")
[ "$sites" -gt 0 ] || bad "--dry-run printed no site: $(head -5 "$OUT/dry_run.txt")"
grep -q '^layers\.0\.experts\.0\.gate .* nvfp4' "$OUT/dry_run.txt" || bad "--dry-run: expert 0's gate is not planned nvfp4"
grep -q '^layers\.0\.attn\.q .* kept: ' "$OUT/dry_run.txt" || bad "--dry-run: attention q has no reason for staying"
grep -q '^total: ' "$OUT/dry_run.txt" || bad "--dry-run printed no totals"
echo "dry run: $sites layer sites planned; $(grep '^total: ' "$OUT/dry_run.txt")"
echo "cli contract: $checks commands run, $fail failures"
[ "$fail" = 0 ]
