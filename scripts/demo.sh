#!/usr/bin/env bash
# `make demo`: the whole YOLO path offline on the bundled DeepPCB subset, on CPU, in a few minutes.
#   convert COCO -> YOLO (id maps, fitted size buckets) -> train a tiny random-init YOLO for a few
#   epochs -> per-epoch COCO AP by size in results.csv -> predictions.json / .csv with the original
#   ids -> `smallbox eval` table.
# A tiny model after 3 CPU epochs finds next to nothing (AP ~ 0): the demo shows the plumbing; the
# last table (two real YOLOv8 models' predictions, bundled) shows what the numbers look like.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=$(realpath -m "${OUT:-runs/demo}")  # absolute: Ultralytics puts a relative project under its runs_dir
EPOCHS=${EPOCHS:-3}
IMGSZ=${IMGSZ:-160}
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false HF_HUB_OFFLINE=1
smallbox() { "$PY" -m smallbox "$@"; }

rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1/5 convert: COCO json -> YOLO dataset with id maps and per-area split"
smallbox convert data/deeppcb/annotations/train.json --images data/deeppcb/images \
  --val data/deeppcb/annotations/val.json --out "$OUT/data" --split small:0:32^2

echo "== 2/5 train a tiny YOLO ($EPOCHS epochs, ${IMGSZ}px, CPU); COCO AP by size every epoch"
smallbox yolo train model=recipes/models/yolo-tiny.yaml data="$OUT/data/data.yaml" \
  epochs="$EPOCHS" imgsz="$IMGSZ" batch=16 device=cpu workers=0 plots=False \
  project="$OUT" name=train exist_ok=True

echo "== 3/5 results.csv: per-epoch AP by size (COCO ranges and the data's fitted ones)"
"$PY" - "$OUT/train/results.csv" <<'EOF'
import csv, sys
rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
cols = ["epoch", "coco/AP", "coco/AP50", "coco/AP_small", "coco/AP_medium", "fit/AP_small", "fit/AP_medium", "fit/AP_large"]
print("".join(f"{c:>15}" for c in cols))
for r in rows:
    print("".join(f"{float(r[c]):>15.4g}" for c in cols))
EOF

echo "== 4/5 predict on the val images: predictions.json (original COCO ids) + competition CSV"
smallbox yolo predict model="$OUT/train/weights/last.pt" source="$OUT/data/images/val" \
  imgsz="$IMGSZ" conf=0.001 max_det=100 iou=0.7 device=cpu save=False verbose=False project="$OUT" name=predict exist_ok=True
head -c 300 "$OUT/predict/predictions.csv"; echo

echo "== 5/5 smallbox eval of those predictions against the original json"
smallbox eval data/deeppcb/annotations/val.json "$OUT/predict/predictions.json" --areas fit
echo
echo "-- for comparison, a real YOLOv8s (640px, 100 epochs) on the same images (bundled predictions):"
smallbox eval data/deeppcb/annotations/val.json data/deeppcb/predictions/yolov8s_640_100_s2_val.json.gz --areas fit
echo
echo "demo done: $OUT/train (results.csv, smallbox.json, predictions.json, weights/), $OUT/predict"
