"""`smallbox slice` with its defaults against the whole image alone, on the 200 DeepPCB val images
with the bundled YOLOv8n (trained at 320): AP, AP_small and time per image, measured in one run
(alternating, after a warm-up). Targets (issue 11.5): tiles + whole image never below the whole
image alone (AP and AP_small), at most 3x its time. Exits 1 naming a missed target."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"
TILE, OVERLAP, UPSCALE = 640, 0.2, 1.25  # smallbox slice's defaults (smallbox/cli/slice.py)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from smallbox.adapters.predict_fn import load_predict_fn
    from smallbox.datasets import load_coco
    from smallbox.evaluate import evaluate
    from smallbox.fusion.sliced import predict_sliced, tile_input_size
    from smallbox.predictions import to_coco_results

    gt = load_coco(ROOT / "data/deeppcb/annotations/val.json", ROOT / "data/deeppcb/images")
    images = [(im, cv2.imread(str(gt.image_path(im)))) for im in gt.images]
    fn = load_predict_fn(MODEL, 0.001, TILE, "cpu", 0.7)
    sliced_fn = fn.with_tile_size(tile_input_size((640, 640), TILE, fn.trained_imgsz, UPSCALE))
    ways = {"whole image alone": fn.full,
            "tiles + whole image (defaults)": lambda px: predict_sliced(px, sliced_fn, TILE, OVERLAP, True, "nms", "iou", 0.5)}
    preds = {name: [] for name in ways}
    seconds = {name: 0.0 for name in ways}
    for way in ways.values():
        way(images[0][1])  # warm-up
    for im, px in images:  # alternate per image: both see the same machine load
        for name, way in ways.items():
            start = time.perf_counter()
            out = way(px)
            seconds[name] += time.perf_counter() - start
            preds[name] += to_coco_results(*out, im["id"], gt.category_ids)
    rows = {name: evaluate(gt, p) for name, p in preds.items()}
    print(f"{'DeepPCB val, bundled YOLOv8n':<34}{'AP':>7}{'AP50':>7}{'AP_small':>10}{'AP_medium':>11}{'ms/img':>8}")
    for name, r in rows.items():
        print(f"{name:<34}{r['AP']:7.3f}{r['AP50']:7.3f}{r['AP_small']:10.3f}{r['AP_medium']:11.3f}"
              f"{1000 * seconds[name] / len(images):8.0f}")
    whole, sliced = rows["whole image alone"], rows["tiles + whole image (defaults)"]
    ratio = seconds["tiles + whole image (defaults)"] / seconds["whole image alone"]
    print(f"time ratio {ratio:.2f}x (target <= 3x)")
    missed = [m for m in ("AP", "AP_small") if sliced[m] < whole[m]] + (["time"] if ratio > 3 else [])
    if missed:
        print(f"MISSED: {', '.join(missed)}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
