"""`smallbox errors` (TIDE's decomposition, overall and per COCO size range) against `smallbox
eval` and against tidecv, on 5,000 images and 250,000 detections: the 200 DeepPCB val images and
a real YOLOv8n's predictions on them, repeated 25 times under new ids. One run, imports first,
each timed on the same data, best of two. Targets (issue 21.4): errors at most 2x eval's time,
faster than tidecv (overall only, its one profile); the overall numbers equal tidecv's within
0.01 AP points. Exits 1 naming a missed check."""

from __future__ import annotations

import copy
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIES, N_DETS = 25, 250_000


def data():
    gt = json.loads((ROOT / "data/deeppcb/annotations/val.json").read_text())
    with gzip.open(ROOT / "data/deeppcb/predictions/yolov8n_640_60_s0_val.json.gz", "rt") as f:
        preds = json.load(f)
    images, anns, dets = [], [], []
    for r in range(COPIES):
        off = r * 1_000_000
        images += [{**im, "id": im["id"] + off} for im in gt["images"]]
        anns += [{**a, "id": a["id"] + off, "image_id": a["image_id"] + off} for a in gt["annotations"]]
        dets += [{**p, "image_id": p["image_id"] + off} for p in preds]
    return {**gt, "images": images, "annotations": anns}, dets[:N_DETS]


def best_of(fn, n=2):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tidecv import TIDE, datasets

    from bench.checks import report_checks
    from smallbox.analysis.errors import error_profiles
    from smallbox.datasets import SizeBuckets
    from smallbox.evaluate import evaluate

    gt, preds = data()
    print(f"{len(gt['images']):,} images, {len(gt['annotations']):,} boxes, {len(preds):,} detections")
    error_profiles(gt, preds[:100], SizeBuckets.coco())  # compile the kernel outside the timing
    t_eval, _ = best_of(lambda: evaluate(gt, preds))
    t_err, ours = best_of(lambda: error_profiles(gt, preds, SizeBuckets.coco()))
    with tempfile.TemporaryDirectory() as tmp:
        tide_gt = copy.deepcopy(gt)
        for a in tide_gt["annotations"]:  # tidecv needs a segmentation per box
            x, y, w, h = a["bbox"]
            a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        Path(tmp, "gt.json").write_text(json.dumps(tide_gt))
        Path(tmp, "dt.json").write_text(json.dumps(preds))

        def tide_run():
            tide = TIDE()
            tide.evaluate(datasets.COCO(str(Path(tmp, "gt.json"))), datasets.COCOResult(str(Path(tmp, "dt.json"))),
                          mode=TIDE.BOX)
            return {**next(iter(tide.get_main_errors().values())), **next(iter(tide.get_special_errors().values()))}

        t_tide, theirs = best_of(tide_run, 1)
    print(f"{'':<42}{'seconds':>9}")
    print(f"{'smallbox eval (faster-coco-eval)':<42}{t_eval:9.2f}")
    print(f"{'smallbox errors (overall + 3 size ranges)':<42}{t_err:9.2f}   {t_err / t_eval:.2f}x eval")
    print(f"{'tidecv (overall only)':<42}{t_tide:9.2f}   smallbox errors {t_tide / t_err:.1f}x faster")
    diff = max(abs(ours["overall"][k] - theirs[k]) for k in theirs)
    return report_checks("bench_errors", [
        (f"errors {t_err / t_eval:.2f}x the time of eval (target <= 2x)", t_err <= 2 * t_eval),
        (f"errors faster than tidecv ({t_tide / t_err:.1f}x)", t_err < t_tide),
        (f"overall ΔAP50 equal to tidecv's within 0.01 (largest difference {diff:.2g})", diff <= 0.01)])


if __name__ == "__main__":
    sys.exit(main())
