"""Benchmark of ``smallbox significance``: 1,000 paired bootstrap resamples of 5,000 images.

The bundled DeepPCB val split (200 images) and its two real prediction files are replicated 25
times (each copy gets new image and annotation ids), so the per-image work is that of a
5,000-image test set with about 60 detections per image. Prints the time of each stage.
"""

import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smallbox.datasets import SizeBuckets, load_coco  # noqa: E402
from smallbox.predictions import load_predictions  # noqa: E402
from smallbox.evaluate.matching import average_precision, match_images, metric_range  # noqa: E402
from smallbox.analysis.significance import bootstrap_difference, format_result, image_weights  # noqa: E402

DEEPPCB = ROOT / "data" / "deeppcb"
COPIES = 25
N_RESAMPLES = 1000


def replicate(gt, preds_list, copies):
    """The ground truth and predictions with every image repeated ``copies`` times (new ids)."""
    data = copy.deepcopy(gt.data)
    images, anns = [], []
    step = max(im["id"] for im in gt.images) + 1
    ann_step = max(a["id"] for a in gt.annotations) + 1
    out_preds = [[] for _ in preds_list]
    for c in range(copies):
        images += [{**im, "id": im["id"] + c * step} for im in gt.images]
        anns += [{**a, "id": a["id"] + c * ann_step, "image_id": a["image_id"] + c * step} for a in gt.annotations]
        for out, preds in zip(out_preds, preds_list):
            out += [{**p, "image_id": p["image_id"] + c * step} for p in preds]
    data["images"], data["annotations"] = images, anns
    return data, out_preds


def main():
    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    files = sorted((DEEPPCB / "predictions").glob("*.json.gz"))
    preds = [load_predictions(f) for f in files]
    data, big = replicate(gt, preds, COPIES)
    n_dets = sum(len(p) for p in big)
    print(f"{len(data['images'])} images, {len(data['annotations'])} boxes, {n_dets} detections in {len(big)} files")
    for metric in ("AP", "AP_small"):
        rng_area, iou = metric_range(metric, SizeBuckets.coco())
        t0 = time.perf_counter()
        matches = match_images(data, big[0], [rng_area])[0]
        t1 = time.perf_counter()
        w = image_weights(np.random.default_rng(0), N_RESAMPLES, len(data["images"]))
        average_precision(matches, w[:50], iou=iou)
        t2 = time.perf_counter()
        print(f"{metric}: matching one file {t1 - t0:.1f} s; 50 resamples {t2 - t1:.2f} s")
        t0, c0 = time.perf_counter(), time.process_time()
        res = bootstrap_difference(data, [big[0]], [big[1]], metric=metric, n=N_RESAMPLES, seed=0, progress=False)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(format_result(res))
        print(f"{metric}: {N_RESAMPLES} resamples x {len(data['images'])} images, 2 prediction files: "
              f"{elapsed:.1f} s wall, {cpu:.1f} s CPU (load average {os.getloadavg()[0]:.1f})\n")


if __name__ == "__main__":
    main()
