"""`smallbox ensemble --method wbf` vs `ensemble_boxes.weighted_boxes_fusion` on the two bundled
DeepPCB prediction files (200 val images, 22,328 boxes), one run each; then AP / AP_small of each
model and of their NMS, soft-NMS, WBF and NMW fusions on the DeepPCB val split.

ensemble_boxes is timed alone, on arrays already normalised per image (its inputs prepared for
it); smallbox is timed from the loaded COCO results lists to the fused COCO results list. Both
are warmed up on one image first.
Target: >= 10x faster, identical output.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"


def per_image_inputs(members, images):
    """ensemble_boxes' inputs, image by image: lists (one per model) of xyxy_norm, scores, labels."""
    by_image = [{} for _ in members]
    for m, preds in enumerate(members):
        for p in preds:
            by_image[m].setdefault(p["image_id"], []).append(p)
    inputs = []
    for im in images:
        w, h = im["width"], im["height"]
        boxes, scores, labels = [], [], []
        for m in range(len(members)):
            ps = by_image[m].get(im["id"], [])
            boxes.append(np.array([[p["bbox"][0] / w, p["bbox"][1] / h, (p["bbox"][0] + p["bbox"][2]) / w,
                                    (p["bbox"][1] + p["bbox"][3]) / h] for p in ps]).reshape(-1, 4))
            scores.append(np.array([p["score"] for p in ps]))
            labels.append(np.array([p["category_id"] for p in ps]))
        inputs.append((im, boxes, scores, labels))
    return inputs


def run_reference(inputs):
    from ensemble_boxes import weighted_boxes_fusion

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        for im, boxes, scores, labels in inputs:
            b, s, lab = weighted_boxes_fusion(boxes, scores, labels)
            out.append((im, b, s, lab))
        return time.perf_counter() - start, time.process_time() - cpu, out


def max_difference(ours, ref):
    """Largest difference of scores and of xyxy_norm boxes, after checking ids and labels match."""
    rows = [(im["id"], int(la), bb, sc, im["width"], im["height"]) for im, b, s, lab in ref
            for bb, sc, la in zip(b, s, lab)]
    assert len(rows) == len(ours), (len(rows), len(ours))
    assert [r[:2] for r in rows] == [(p["image_id"], p["category_id"]) for p in ours]
    x, y, w, h = np.array([p["bbox"] for p in ours]).T
    W, H = np.array([r[4:] for r in rows], dtype=float).T
    ours_norm = np.stack([x / W, y / H, (x + w) / W, (y + h) / H], axis=1)
    box_diff = np.abs(ours_norm - np.array([r[2] for r in rows])).max()
    score_diff = np.abs(np.array([p["score"] for p in ours]) - np.array([r[3] for r in rows])).max()
    return box_diff, score_diff


def main():
    from smallbox.datasets import load_coco
    from smallbox.evaluate import evaluate
    from smallbox.fusion.ensemble import ensemble_predictions

    paths = sorted((DEEPPCB / "predictions").glob("*.json.gz"))
    members = [json.load(gzip.open(p, "rt")) for p in paths]
    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    print(f"{len(gt.images)} images, {sum(map(len, members))} boxes in {len(members)} files; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    inputs = per_image_inputs(members, gt.images)
    # Warm both up on one image (first-call costs: imports, numpy dispatch), then one full run each.
    run_reference(inputs[:1])
    ensemble_predictions([[p for p in m if p["image_id"] == gt.images[0]["id"]] for m in members], gt.images[:1])
    ref_time, ref_cpu, ref = run_reference(inputs)
    start, cpu = time.perf_counter(), time.process_time()
    ours = ensemble_predictions(members, gt.images, "wbf")
    ours_time, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    box_diff, score_diff = max_difference(ours, ref)
    # CPU time too: on a shared machine wall time mostly measures the neighbours.
    print(f"{'':38}{'wall':>8}{'cpu':>8}")
    print(f"{'ensemble_boxes.weighted_boxes_fusion':<38}{ref_time:7.3f}s{ref_cpu:7.3f}s")
    print(f"{'smallbox ensemble --method wbf':<38}{ours_time:7.3f}s{ours_cpu:7.3f}s")
    print(f"{'speed-up':<38}{ref_time / ours_time:7.1f}x{ref_cpu / ours_cpu:7.1f}x   (target >= 10x)")
    print(f"max |difference|: boxes (xyxy_norm) {box_diff:.2e}, scores {score_diff:.2e}")

    print(f"\n{'DeepPCB val':<34}{'AP':>7}{'AP50':>7}{'AP_small':>10}{'AP_medium':>11}{'AP_large':>10}")
    rows = [(p.name.replace(".json.gz", ""), m) for p, m in zip(paths, members)]
    rows += [(f"{method} fusion", ensemble_predictions(members, gt.images, method))
             for method in ("nms", "soft-nms", "wbf", "nmw")]
    for name, preds in rows:
        r = evaluate(gt, preds)
        print(f"{name:<34}{r['AP']:7.3f}{r['AP50']:7.3f}{r['AP_small']:10.3f}{r['AP_medium']:11.3f}{r['AP_large']:10.3f}")


if __name__ == "__main__":
    main()
