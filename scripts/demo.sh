#!/usr/bin/env bash
# `make demo`: what smallbox is for, offline on the bundled DeepPCB data, on CPU, in about 2 minutes.
# Each step is the one command a user would type:
#   1 convert COCO -> YOLO (id maps, size buckets fitted on the training boxes, recorded)
#   2 the training loop works: a tiny YOLO for 2 epochs, COCO AP by size in every results.csv row
#   3 a real model: the bundled YOLOv8n, trained by smallbox on the 800 DeepPCB training images at
#     320 px, predicts the 200 val images it never saw (original ids) -> smallbox eval: AP by size,
#     COCO's buckets and the dataset's fitted ones
#   4 the same model sliced (tiles + whole image) against the whole image alone
#   5 an ensemble (WBF) with another model's bundled predictions, scored by size
#   6 is the ensemble really better than our model? the calibrated significance verdict
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=$(realpath -m "${OUT:-runs/demo}")
MODEL=data/models/yolov8n-deeppcb-320.pt
OTHER=data/deeppcb/predictions/yolov8s_640_100_s2_val.json.gz   # a YOLOv8s (640 px, 100 epochs), bundled
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false HF_HUB_OFFLINE=1
smallbox() { echo "\$ smallbox $*"; "$PY" -m smallbox "$@"; }
step() { echo; echo "== $*"; }

rm -rf "$OUT"
mkdir -p "$OUT"

step "1/6 convert: COCO json -> YOLO dataset with id maps, fitted size buckets and a small-box split"
smallbox convert data/deeppcb/annotations/train.json --images data/deeppcb/images \
  --val data/deeppcb/annotations/val.json --out "$OUT/data" --split small:0:32^2

step "2/6 the training loop works: a tiny YOLO, 2 epochs at 160 px; COCO AP by size in every results.csv row"
smallbox yolo train model=recipes/models/yolo-tiny.yaml data="$OUT/data/data.yaml" epochs=2 imgsz=160 batch=16 \
  device=cpu workers=0 plots=False verbose=False project="$OUT" name=tiny exist_ok=True > "$OUT/tiny.log" 2>&1
"$PY" - "$OUT/tiny/results.csv" <<'PYEOF'
import csv, sys
rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
cols = ["epoch", "coco/AP", "coco/AP_small", "coco/AP_medium", "fit/AP_small", "fit/AP_medium", "fit/AP_large"]
print("".join(f"{c:>15}" for c in cols))
for r in rows:
    print("".join(f"{float(r[c]):>15.4g}" for c in cols))
print("(a tiny model after 2 CPU epochs finds next to nothing; the real model follows)")
PYEOF

step "3/6 a real model on images it never saw: predict (original ids) -> smallbox eval by size"
smallbox yolo predict model=$MODEL source="$OUT/data/images/val" imgsz=320 conf=0.001 iou=0.7 \
  device=cpu save=False verbose=False project="$OUT" name=predict exist_ok=True 2>&1 | grep -i "smallbox:" || true
smallbox eval "$OUT/data/annotations/val.json" "$OUT/predict/predictions.json" --areas fit

step "4/6 sliced inference (tiles + whole image) against the whole image alone"
smallbox slice $MODEL --images "$OUT/data/images/val" --gt "$OUT/data/annotations/val.json" \
  --out "$OUT/sliced/predictions.json" --device cpu --eval

step "5/6 an ensemble (WBF) of our model and another model's bundled predictions"
smallbox ensemble "$OUT/predict/predictions.json" $OTHER --gt "$OUT/data/annotations/val.json" \
  --names yolov8n-320 yolov8s-640 --method wbf --out "$OUT/ensemble/wbf.json" --eval

step "6/6 is the ensemble really better than our model alone? (one run per side: the verdict says what it can)"
smallbox significance "$OUT/data/annotations/val.json" "$OUT/predict/predictions.json" -- "$OUT/ensemble/wbf.json" \
  --metric AP_small --n 500

echo
echo "demo done: $OUT (data/, tiny/, predict/, sliced/, ensemble/)"
