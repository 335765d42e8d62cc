"""`smallbox eval` vs pycocotools COCOeval vs faster-coco-eval, on the bundled DeepPCB val
predictions replicated to 5,000 images; each timed from the json files on disk to the numbers.

All three are timed the same way, in this process: modules imported first, then REPEATS rounds
in which each runs once, the order rotating every round (so none is always the cold first one);
the best wall time of each is compared.

Checks (exit code 1 naming the missed ones): the 12 numbers equal pycocotools' (|diff| <= 1e-9);
within 10% of faster-coco-eval; >= 3x faster than pycocotools.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from checks import report_checks  # bench/checks.py: python bench/X.py puts bench/ on the path

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"
COPIES = 25  # 200 val images x 25 = 5,000 images
REPEATS = 3
MAX_DIFF, MAX_OVER_FASTER, MIN_OVER_PYCOCOTOOLS = 1e-9, 1.10, 3.0


def replicate(out: Path) -> tuple[Path, Path]:
    gt = json.loads((DEEPPCB / "annotations" / "val.json").read_text())
    with gzip.open(DEEPPCB / "predictions" / "yolov8s_640_100_s2_val.json.gz", "rt") as f:
        preds = json.load(f)
    step = max(im["id"] for im in gt["images"]) + 1
    images, anns, dets = [], [], []
    for c in range(COPIES):
        images += [dict(im, id=im["id"] + c * step) for im in gt["images"]]
        anns += [dict(a, id=len(anns) + i + 1, image_id=a["image_id"] + c * step) for i, a in enumerate(gt["annotations"])]
        dets += [dict(p, image_id=p["image_id"] + c * step) for p in preds]
    gt_path, pred_path = out / "gt.json", out / "preds.json"
    gt_path.write_text(json.dumps(dict(gt, images=images, annotations=anns)))
    pred_path.write_text(json.dumps(dets))
    print(f"{len(images)} images, {len(anns)} boxes, {len(dets)} predictions")
    return gt_path, pred_path


def run_smallbox(gt_path, pred_path):
    from smallbox.evaluate import METRIC_KEYS, evaluate
    r = evaluate(gt_path, pred_path)
    return np.array([r[k] for k in METRIC_KEYS])


def run_reference(gt_path, pred_path, module: str):
    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(pred_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def main() -> int:
    import faster_coco_eval  # noqa: F401  imports are not part of the timing
    import pycocotools.cocoeval  # noqa: F401

    import smallbox.evaluate  # noqa: F401

    runs = {"smallbox": run_smallbox, "faster-coco-eval": functools.partial(run_reference, module="faster_coco_eval"),
            "pycocotools": functools.partial(run_reference, module="pycocotools")}
    times, metrics = {name: [] for name in runs}, {}
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = replicate(Path(tmp))
        names = list(runs)
        for r in range(REPEATS):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t = time.perf_counter()
                metrics[name] = runs[name](gt_path, pred_path)
                times[name].append(time.perf_counter() - t)
    best = {name: min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:<18} best {best[name]:7.2f} s   each run: {', '.join(f'{t:.2f}' for t in ts)}")
    diff_pc = float(np.abs(metrics["smallbox"] - metrics["pycocotools"]).max())
    diff_fc = float(np.abs(metrics["smallbox"] - metrics["faster-coco-eval"]).max())
    checks = [
        ((f"numbers equal pycocotools' (max |diff| {diff_pc:.2e}, target <= {MAX_DIFF:g}; "
          f"vs faster-coco-eval {diff_fc:.2e})"), diff_pc <= MAX_DIFF),
        ((f"smallbox / faster-coco-eval time = {best['smallbox'] / best['faster-coco-eval']:.2f} "
          f"(target <= {MAX_OVER_FASTER:.2f})"), best["smallbox"] <= MAX_OVER_FASTER * best["faster-coco-eval"]),
        (f"pycocotools / smallbox time = {best['pycocotools'] / best['smallbox']:.1f}x (target >= {MIN_OVER_PYCOCOTOOLS:g}x)",
         best["pycocotools"] >= MIN_OVER_PYCOCOTOOLS * best["smallbox"]),
    ]
    return report_checks("bench_eval", checks)


if __name__ == "__main__":
    sys.exit(main())
