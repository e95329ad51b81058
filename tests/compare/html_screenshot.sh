#!/usr/bin/env bash
# report.html renders: compare every registered format on the demo model, screenshot the
# report with headless Chromium and check the PNG is not blank. A blank page goes through
# the same check first and must fail it. The window is tall enough to reach the heatmaps
# (the output-error table and chart come first when --eval-ids is given). Exit 77 (ctest: skipped) without chromium.
set -euo pipefail
MOEQ=$1; OUT=$2; PY=$3
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "SKIP: chromium is not installed (apt-get install chromium; scripts/setup.sh lists it): report.html not rendered"
  exit 77
fi
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT"; mkdir -p "$OUT"
"$MOEQ" make-demo "$OUT/demo" > /dev/null
# With the output error (--eval-ids): the report also holds its table and the KL vs size chart.
"$PY" -c "import sys,torch; from safetensors.torch import save_file; g=torch.Generator().manual_seed(1); save_file({'ids': torch.randint(512, (2, 16), generator=g)}, sys.argv[1])" "$OUT/ids.safetensors"
"$MOEQ" compare "$OUT/demo/qwen3_moe_fused" --formats all -o "$OUT/report" --worst 5 --eval-ids "$OUT/ids.safetensors"
grep -q "log10 mean KL" "$OUT/report/report.html" || { echo "report.html lacks the KL chart"; exit 1; }
shot() {  # URL PNG
  timeout 180 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$OUT/profile" --screenshot="$2" --window-size=1200,4000 "$1" > "$OUT/chromium.log" 2>&1 \
    || { cat "$OUT/chromium.log"; exit 1; }
  [ -s "$2" ] || { echo "chromium wrote no screenshot"; cat "$OUT/chromium.log"; exit 1; }
}
echo '<!DOCTYPE html><html><body></body></html>' > "$OUT/blank.html"
shot "file://$OUT/blank.html" "$OUT/blank.png"
"$PY" "$HERE/png_check.py" "$OUT/blank.png" --expect-blank
shot "file://$OUT/report/report.html" "$OUT/report.png"
"$PY" "$HERE/png_check.py" "$OUT/report.png"
