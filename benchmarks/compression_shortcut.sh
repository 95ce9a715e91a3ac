#!/usr/bin/env bash
# Does a model learn the face or the compression? seed-mobilenet on lfw-faceswap (reals ~q90, fakes ~q95)
# trained three ways, each tested on its held-out split as is and re-encoded at JPEG quality 75.
#   bash benchmarks/compression_shortcut.sh [EPOCHS] [OUT]      (defaults: 3, runs/compression-shortcut)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
out=${2:-runs/compression-shortcut}
data=${DATA:-../shared/data/lfw-faceswap}
[ -d "$data" ] || { echo "data folder $data is absent (set DATA=...)"; exit 2; }
fc=.venv/bin/facecheck
mkdir -p "$out"
$fc data inspect "$data" --report "$out/inspect.html" > "$out/inspect.txt"
for mode in raw normalize-jpeg-90 robust; do
  case $mode in
    raw) extra=() ;;
    normalize-jpeg-90) extra=(--normalize-jpeg 90) ;;
    robust) extra=(--augment robust) ;;
  esac
  [ -f "$out/$mode/summary.json" ] || \
    $fc train --data "$data" --preset seed-mobilenet --epochs "$epochs" --seed 0 --out "$out/$mode" --quiet "${extra[@]}" > /dev/null
  $fc evaluate --model "$out/$mode" --json --perturb jpeg:75 > "$out/$mode/evaluation.json"
done
.venv/bin/python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| training | test accuracy | test ROC AUC | accuracy, re-encoded q75 | ROC AUC, re-encoded q75 |")
print("|---|---:|---:|---:|---:|")
for mode in ("raw", "normalize-jpeg-90", "robust"):
    r = json.loads((out / mode / "evaluation.json").read_text())
    p = r["perturbations"]["jpeg:75"]
    print(f"| {mode} | {r['accuracy']:.4f} | {r['roc_auc']:.4f} | {p['accuracy']:.4f} | {p['roc_auc']:.4f} |")
PY
