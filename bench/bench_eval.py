"""`smallbox eval` vs pycocotools COCOeval vs faster-coco-eval, on the bundled DeepPCB val
predictions replicated to 5,000 images; each timed from the json files on disk to the numbers.

Targets: within 10% of faster-coco-eval, >= 3x faster than pycocotools, identical numbers.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"
COPIES = 25  # 200 val images x 25 = 5,000 images


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
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(pred_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def timed(fn, *args, repeats=3):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = replicate(Path(tmp))
        t_sb, m_sb = timed(run_smallbox, gt_path, pred_path)
        t_fc, m_fc = timed(run_reference, gt_path, pred_path, "faster_coco_eval")
        t_pc, m_pc = timed(run_reference, gt_path, pred_path, "pycocotools", repeats=1)
    print(f"smallbox eval      {t_sb:7.2f} s")
    print(f"faster-coco-eval   {t_fc:7.2f} s   smallbox/faster = {t_sb / t_fc:.2f} (target <= 1.10)")
    print(f"pycocotools        {t_pc:7.2f} s   pycocotools/smallbox = {t_pc / t_sb:.1f}x (target >= 3x)")
    print(f"max |diff| vs pycocotools: {np.abs(m_sb - m_pc).max():.2e}, vs faster-coco-eval: {np.abs(m_sb - m_fc).max():.2e}")


if __name__ == "__main__":
    main()
