"""Benchmark of ``smallbox significance``: the calibrated test with 1,000 paired image resamples of
5,000 images, two runs per side. Target: under a minute per metric; exits 1 naming the metric that
missed it.

The bundled DeepPCB val split (200 images) and its two real prediction files are replicated 25
times (each copy gets new image and annotation ids): the per-image work of a 5,000-image test set
with about 60 detections per image. The test needs two or more runs per side, so each side gets
its real file and a copy with jittered scores standing in for a second seed (the timing does not
depend on which predictions they are). Prints the time of each stage and the verdict.
"""

import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smallbox.analysis.significance import compare_runs, format_result  # noqa: E402
from smallbox.datasets import load_coco  # noqa: E402
from smallbox.predictions import load_predictions  # noqa: E402

DEEPPCB = ROOT / "data" / "deeppcb"
COPIES = 25
N_RESAMPLES = 1000
TARGET_SECONDS = 60.0


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


def jitter(preds, seed):
    rng = np.random.default_rng(seed)
    return [{**p, "score": float(min(1.0, p["score"] * x))} for p, x in zip(preds, rng.uniform(0.8, 1.2, len(preds)))]


def main():
    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    files = sorted((DEEPPCB / "predictions").glob("*.json.gz"))
    data, big = replicate(gt, [load_predictions(f) for f in files], COPIES)
    sides = [[big[0], jitter(big[0], 10)], [big[1], jitter(big[1], 20)]]
    n_dets = sum(len(p) for side in sides for p in side)
    print(f"{len(data['images'])} images, {len(data['annotations'])} boxes, {n_dets} detections in 4 files "
          f"(2 runs per side); load average {os.getloadavg()[0]:.1f}")
    missed = []
    for metric in ("AP_small", "AP"):
        t0, c0 = time.perf_counter(), time.process_time()
        res = compare_runs(data, sides[0], sides[1], metric=metric, n=N_RESAMPLES, seed=0, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(format_result(res))
        print(f"{metric}: {N_RESAMPLES} resamples x {len(data['images'])} images, 4 prediction files: "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU (load average {os.getloadavg()[0]:.1f}); target {TARGET_SECONDS:.0f} s\n")
        if wall > TARGET_SECONDS:
            missed.append(f"{metric} {wall:.1f} s")
    if missed:
        print(f"MISSED the {TARGET_SECONDS:.0f} s target: " + ", ".join(missed))
        return 1
    print(f"both metrics under {TARGET_SECONDS:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
