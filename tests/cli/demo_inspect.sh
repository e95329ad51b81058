#!/usr/bin/env bash
# The main README job on the embedded default, as a user runs it: write the demo
# checkpoints, inspect both layouts, and check what inspect reports.
set -euo pipefail
MOEQ=$1; OUT=$2
rm -rf "$OUT"
"$MOEQ" make-demo "$OUT"
for layout in per_expert fused; do
  "$MOEQ" inspect "$OUT/qwen3_moe_$layout" --strict > "$OUT/$layout.txt"
  "$MOEQ" inspect "$OUT/qwen3_moe_$layout" --json > "$OUT/$layout.json"
done
grep -q "on-disk layout per-expert 2D" "$OUT/per_expert.txt"
grep -q "on-disk layout fused 3D" "$OUT/fused.txt"
# 4 layers x 16 experts x 3 projections listed in each
for layout in per_expert fused; do
  n=$(grep -c '^layers\.[0-9]*\.experts\.' "$OUT/$layout.txt")
  [ "$n" = 192 ] || { echo "expected 192 expert sites in $layout, got $n"; exit 1; }
done
grep -q '"unclaimed": \[\]' "$OUT/fused.json"
# Errors are one line and non-zero.
if "$MOEQ" inspect "$OUT/nope" 2> "$OUT/err.txt"; then echo "inspect of a missing dir succeeded"; exit 1; fi
[ "$(wc -l < "$OUT/err.txt")" = 1 ] || { cat "$OUT/err.txt"; exit 1; }
echo "demo inspect ok"
