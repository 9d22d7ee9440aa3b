#!/usr/bin/env bash
# Compare variants of the bundled preset on a small synthetic suite (the figures in docs/bundled-model.md).
#   bash scripts/tune_bundled.sh OUT_DIR [PER_TYPE]
set -euo pipefail
OUT="${1:-runs/tune}"
PER_TYPE="${2:-2}"
declare -A VARIANTS=(
  [preset]=""
  [lr005]="--set learning_rate=0.05"
  [strength075]="--set strength=0.75"
  [k20]="--set iterations=20"
  [scaled1]="--set feature_scale=1.0"
  [steps25]="--set num_steps=25"
  [no_hard_mask]="--set hard_mask=false"
)
for name in preset lr005 strength075 k20 scaled1 steps25 no_hard_mask; do
  # shellcheck disable=SC2086
  dragnext bench --model "${MODEL:-bundled}" --suite synthetic --per-type "$PER_TYPE" --methods dragnext --out "$OUT/$name" \
    --quiet ${VARIANTS[$name]} > "$OUT.$name.log" 2>&1 || echo "variant $name failed (see $OUT.$name.log)"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print(f"{'variant':<14} {'type':<10} {'IoU':>6} {'IoU0':>6} {'cent px':>8} {'PSNR':>6} {'s/edit':>7}")
for folder in sorted(p for p in root.iterdir() if (p / "summary.json").is_file()):
    summary = json.loads((folder / "summary.json").read_text())
    for method, groups in summary["methods"].items():
        for kind, g in groups.items():
            if g.get("iou") is None:
                continue
            print(f"{folder.name:<14} {kind:<10} {g['iou']:>6.3f} {g['iou_unedited']:>6.3f} "
                  f"{g['centroid_error']:>8.2f} {g['psnr']:>6.2f} {g['seconds']:>7.1f}")
PY
