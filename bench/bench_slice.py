"""`smallbox slice` with its defaults against each image predicted alone, with the bundled YOLOv8n
(trained at 320 px on the 640 px DeepPCB images), in three settings measured in one run:

1. the 200 val images, tiles of 640 px (the default: tile = image),
2. the same images, tiles of 320 px (tiles smaller than the image: objects are cut),
3. 2x2 mosaics of the val images (1280 x 1280, the reason to slice: images larger than the
   training ones), tiles of 640 px, scored against the mosaics' boxes; "alone" is each of the
   four images predicted at its own size and shifted into the mosaic.

Then the tiles' batching (issue 22.3): the 320 px tiles of the val images one per forward pass
against the default batch, same AP (the boxes do not depend on it), and the speed-up.

Targets (issues 11.5 and 24.3): sliced never below the images alone on AP_small by more than 0.01,
and on the 640 px images at most 3x their time; batched tiles faster than one at a time, with the
same AP. The time ratio of every setting is printed. Exits 1 naming a missed target."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"


def mosaics(gt, folder: Path):
    """2x2 mosaics of consecutive val images: (COCO dict, [(mosaic id, path, [(source image, x, y)])])."""
    images, annotations, layout = [], [], []
    by_image = {}
    for a in gt.annotations:
        by_image.setdefault(a["image_id"], []).append(a)
    for k in range(0, len(gt.images) - 3, 4):
        canvas, placed, mid = np.zeros((1280, 1280, 3), np.uint8), [], 1_000_000 + k
        for q, im in enumerate(gt.images[k:k + 4]):
            x, y = 640 * (q % 2), 640 * (q // 2)
            canvas[y:y + 640, x:x + 640] = cv2.imread(str(gt.image_path(im)))
            placed.append((im, x, y))
            for a in by_image.get(im["id"], []):
                annotations.append({**a, "id": len(annotations) + 1, "image_id": mid,
                                    "bbox": [a["bbox"][0] + x, a["bbox"][1] + y, *a["bbox"][2:]]})
        path = folder / f"mosaic_{k:04d}.png"
        cv2.imwrite(str(path), canvas)
        images.append({"id": mid, "file_name": path.name, "width": 1280, "height": 1280})
        layout.append((mid, path, placed))
    return {"images": images, "annotations": annotations, "categories": gt.data["categories"]}, layout


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.checks import report_checks
    from smallbox.adapters.predict_fn import load_predict_fn
    from smallbox.datasets import CocoDataset, load_coco
    from smallbox.evaluate import evaluate
    from smallbox.fusion.sliced import SliceOptions, slice_images
    from smallbox.predictions import to_coco_results

    gt = load_coco(ROOT / "data/deeppcb/annotations/val.json", ROOT / "data/deeppcb/images")
    fn = load_predict_fn(MODEL, 0.001, 640, "cpu", 0.7)
    ids = gt.category_ids

    def alone(image, shift=(0, 0)):
        boxes, scores, labels = fn.full(cv2.imread(str(gt.image_path(image))))
        return np.asarray(boxes) + [*shift, *shift], scores, labels

    fn.full(cv2.imread(str(gt.image_path(gt.images[0]))))  # warm-up
    rows, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        mosaic_json, layout = mosaics(gt, Path(tmp))
        mosaic_gt = CocoDataset(Path(tmp) / "mosaics.json", mosaic_json, Path(tmp))
        settings = [("val images, tiles 640 (default)", gt, [(im["id"], gt.image_path(im), [(im, 0, 0)]) for im in gt.images], 640),
                    ("val images, tiles 320", gt, [(im["id"], gt.image_path(im), [(im, 0, 0)]) for im in gt.images], 320),
                    ("2x2 mosaics (1280 px), tiles 640", mosaic_gt, layout, 640)]
        for name, truth, items, tile in settings:
            sliced, whole, t_sliced, t_alone = [], [], 0.0, 0.0
            for image_id, path, placed in items:  # alternate per image: both see the same machine load
                start = time.perf_counter()
                for im, x, y in placed:
                    whole += to_coco_results(*alone(im, (x, y)), image_id, ids)
                t_alone += time.perf_counter() - start
                preds, _, seconds = slice_images([(image_id, path)], fn, SliceOptions(tile=tile), ids, progress=False)
                sliced += preds
                t_sliced += seconds
            a, s = evaluate(truth, whole), evaluate(truth, sliced)
            rows.append((name, a, s, t_sliced / t_alone))
            checks.append((f"{name}: sliced AP_small {s['AP_small']:.3f} >= alone {a['AP_small']:.3f} - 0.01",
                           s["AP_small"] >= a["AP_small"] - 0.01))
    print(f"{'bundled YOLOv8n (320 px), DeepPCB val':<38}{'alone AP':>9}{'AP_s':>7}{'sliced AP':>11}{'AP_s':>7}{'time':>8}")
    for name, a, s, ratio in rows:
        print(f"{name:<38}{a['AP']:9.3f}{a['AP_small']:7.3f}{s['AP']:11.3f}{s['AP_small']:7.3f}{ratio:7.2f}x")
    checks.append((f"val images, tiles 640: time ratio {rows[0][3]:.2f}x <= 3x", rows[0][3] <= 3))
    checks += batching(gt, fn, ids)
    return report_checks("bench_slice", checks)


def batching(gt, fn, ids) -> list:
    """320 px tiles of the val images, one per forward pass vs the default batch, alternating."""
    from smallbox.evaluate import evaluate
    from smallbox.fusion.sliced import DEFAULT_BATCH, SliceOptions, slice_images

    ways = {1: [], DEFAULT_BATCH: []}
    seconds = {1: 0.0, DEFAULT_BATCH: 0.0}
    for im in gt.images:
        for batch in ways:
            preds, _, t = slice_images([(im["id"], gt.image_path(im))], fn, SliceOptions(tile=320, batch=batch), ids,
                                       progress=False)
            ways[batch] += preds
            seconds[batch] += t
    ap = {b: evaluate(gt, p) for b, p in ways.items()}
    speedup = seconds[1] / seconds[DEFAULT_BATCH]
    print(f"tiles 320, one per pass: {1000 * seconds[1] / len(gt.images):.0f} ms/img; batch {DEFAULT_BATCH}: "
          f"{1000 * seconds[DEFAULT_BATCH] / len(gt.images):.0f} ms/img ({speedup:.2f}x); AP_small "
          f"{ap[1]['AP_small']:.4f} vs {ap[DEFAULT_BATCH]['AP_small']:.4f}")
    return [(f"batched tiles {speedup:.2f}x faster than one per pass", speedup > 1.0),
            ("batched tiles: the same AP and AP_small (within 1e-4)",
             abs(ap[1]["AP"] - ap[DEFAULT_BATCH]["AP"]) < 1e-4 and abs(ap[1]["AP_small"] - ap[DEFAULT_BATCH]["AP_small"]) < 1e-4)]


if __name__ == "__main__":
    sys.exit(main())
