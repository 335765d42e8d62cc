"""COCO box evaluation with AP by size, for COCO's ranges and any others, in one pass.

A thin layer over the reference implementations: faster-coco-eval (default, C++) or
pycocotools. Extra size ranges are added to ``params.areaRng`` so matching runs once for all
of them, and the summary numbers are read off the accumulated precision/recall arrays exactly
as ``COCOeval.summarize`` does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

import numpy as np

from ..datasets.buckets import AREA_MAX, BUCKET_NAMES, SizeBuckets
from ..datasets.coco import CocoDataset, load_coco
from ..errors import SmallboxError
from ..predictions.files import load_predictions

BACKENDS = ("faster", "pycocotools")
METRIC_KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
               "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")
BUCKET_KEYS = tuple(f"{m}_{b}" for m in ("AP", "AR") for b in BUCKET_NAMES)
DEFAULT_MAX_DETS = 100


def evaluate(gt, preds, buckets=None, backend: str = "faster", per_class: bool = False,
             max_dets: int = DEFAULT_MAX_DETS) -> dict:
    """COCO bbox metrics of ``preds`` against ``gt``.

    Args:
        gt: a :class:`CocoDataset`, a COCO dict, or a json path.
        preds: COCO results (list or path); validated against ``gt``'s ids.
        buckets: a :class:`SizeBuckets` or a list of them besides COCO's; COCO's ranges are always
            evaluated.
        backend: ``"faster"`` (faster-coco-eval) or ``"pycocotools"``; the numbers are the same.
        per_class: add per-category AP, AP50 and AP by size.
        max_dets: detections per image kept (each image's top scores), COCO's 100 by default;
            AP and the size metrics are computed at it, AR at 1, 10, 100 and it.
    Returns:
        dict: the 12 ``METRIC_KEYS`` for COCO's ranges (``-1`` where no ground truth falls in a
        range, as in pycocotools), ``AR_<max_dets>`` and ``"max_dets"``; ``"buckets"``:
        ``{set name: {"thresholds", "names", "ranges" ([lo, hi] px²), "AP", "AR" (lists in range
        order), "AP_<range>", "AR_<range>", ...}}`` for every bucket set, COCO's included; with
        ``per_class``, ``"per_class"``: ``{category name: {"category_id", "AP", "AP50",
        "AP_small", ...}}`` (COCO's ranges).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    if int(max_dets) != max_dets or max_dets < 1:
        raise SmallboxError(f"--max-dets must be a positive integer, got {max_dets}")
    gt_data = _as_gt_dict(gt)
    sets = _bucket_sets(buckets)
    # loadRes adds keys to each result: copy the caller's dicts, not those read here from a file.
    owned = isinstance(preds, (str, os.PathLike))
    preds = load_predictions(preds, [im["id"] for im in gt_data["images"]], [c["id"] for c in gt_data["categories"]])
    precision, recall, params = _run_cocoeval(gt_data, preds if owned else [dict(p) for p in preds], sets, backend, max_dets)
    result = _summary(precision, recall, params, area_index=0)
    result["max_dets"] = int(max_dets)
    result["cut"] = detections_beyond(preds, max_dets)
    result["buckets"], first = {}, 1
    for b in sets:
        summary = _bucket_summary(precision, recall, params, first, b.names)
        result["buckets"][b.name] = {"thresholds": list(b.thresholds), "names": list(b.names),
                                     "ranges": [[lo, hi] for _, lo, hi in b.ranges()],
                                     "AP": [summary[f"AP_{n}"] for n in b.names],
                                     "AR": [summary[f"AR_{n}"] for n in b.names], **summary}
        first += len(b.names)
    if per_class:
        names = {c["id"]: c["name"] for c in gt_data["categories"]}
        result["per_class"] = {names[int(cid)]: {"category_id": int(cid), **_class_summary(precision, params, k)}
                               for k, cid in enumerate(params.catIds)}
    return result


def detections_beyond(preds: list[dict], max_dets: int) -> dict:
    """What the limit drops: COCOeval keeps each image's ``max_dets`` best detections per class.
    ``{"images": images with a class over the limit, "boxes": detections not scored}``."""
    from collections import Counter

    counts = Counter((p["image_id"], p["category_id"]) for p in preds)
    over = {key: n - max_dets for key, n in counts.items() if n > max_dets}
    return {"images": len({image for image, _ in over}), "boxes": int(sum(over.values()))}


def cut_message(result: dict) -> str | None:
    """One line when the detection limit dropped boxes, else None."""
    cut = result.get("cut") or {}
    if not cut.get("boxes"):
        return None
    return (f"note: {cut['images']} image(s) hold more than {result['max_dets']} detections of one class: their "
            f"{cut['boxes']} lowest-scored ones are not scored (COCO keeps the {result['max_dets']} best per image and "
            f"class; raise it with --max-dets)")


def _as_gt_dict(gt) -> dict:
    if isinstance(gt, CocoDataset):
        return gt.data
    if isinstance(gt, dict):
        return gt
    return load_coco(gt, check_files=False).data


def _bucket_sets(buckets) -> list[SizeBuckets]:
    if buckets is None:
        buckets = []
    elif isinstance(buckets, SizeBuckets):
        buckets = [buckets]
    sets = [SizeBuckets.coco()] + [b for b in buckets if not (b.is_coco and b.name == "coco")]
    names = [b.name for b in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"bucket sets need distinct names, got {names}")
    return sets


def _area_ranges(sets: list[SizeBuckets]) -> tuple[list, list]:
    ranges, labels = [[0.0, AREA_MAX]], ["all"]
    for b in sets:
        for name, lo, hi in b.ranges():
            ranges.append([lo, hi])
            labels.append(f"{name}@{b.name}")
    return ranges, labels


def _run_cocoeval(gt_data: dict, preds: list, sets, backend: str, max_dets: int):
    """Returns ``precision [T, R, K, A, M]``, ``recall [T, K, A, M]`` and the params, where A
    runs over "all" then small/medium/large of each bucket set."""
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    quiet = contextlib.redirect_stdout(io.StringIO())
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    with quiet:
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(preds) if preds else _empty_results(coco_gt, COCO)
        kwargs = {"print_function": lambda *a, **k: None} if backend == "faster" else {}
        ev = COCOeval(coco_gt, coco_dt, "bbox", **kwargs)
        ev.params.areaRng, ev.params.areaRngLbl = _area_ranges(sets)
        # the limit last (AP and matching use maxDets[-1]); COCO's 1, 10, 100 where they lie below it
        ev.params.maxDets = sorted({d for d in (1, 10, DEFAULT_MAX_DETS) if d < max_dets} | {int(max_dets)})
        ev.evaluate()
        ev.accumulate()
    return np.asarray(ev.eval["precision"]), np.asarray(ev.eval["recall"]), ev.params


def _empty_results(coco_gt, coco_cls):
    # pycocotools' loadRes fails on an empty list; an empty result set is still evaluable.
    res = coco_cls()
    res.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"], "annotations": []}
    res.createIndex()
    return res


def _mean_valid(x: np.ndarray) -> float:
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else -1.0


def _ap(precision, params, area: int, iou=None, max_det=None) -> float:
    m = params.maxDets.index(max_det or params.maxDets[-1])
    p = precision[:, :, :, area, m]
    if iou is not None:
        p = p[np.where(np.isclose(params.iouThrs, iou))[0]]
    return _mean_valid(p)


def _ar(recall, params, area: int, max_det=None) -> float:
    m = params.maxDets.index(max_det or params.maxDets[-1])
    return _mean_valid(recall[:, :, area, m])


def _summary(precision, recall, params, area_index: int) -> dict:
    """The numbers of ``COCOeval.summarize``, for COCO's ranges (area rows 1-3); AR at every
    detection limit."""
    dets = params.maxDets
    out = {"AP": _ap(precision, params, 0), "AP50": _ap(precision, params, 0, iou=0.5),
           "AP75": _ap(precision, params, 0, iou=0.75)}
    out.update({f"AP_{n}": _ap(precision, params, 1 + i) for i, n in enumerate(BUCKET_NAMES)})
    out.update({f"AR_{d}": _ar(recall, params, 0, d) for d in dets})
    out.update({f"AR_{n}": _ar(recall, params, 1 + i) for i, n in enumerate(BUCKET_NAMES)})
    return out


def _bucket_summary(precision, recall, params, first: int, names) -> dict:
    """AP and AR of the ranges of one bucket set, whose area rows start at ``first``."""
    out = {f"AP_{n}": _ap(precision, params, first + i) for i, n in enumerate(names)}
    out.update({f"AR_{n}": _ar(recall, params, first + i) for i, n in enumerate(names)})
    return out


def _class_summary(precision, params, k: int) -> dict:
    one = precision[:, :, k : k + 1]
    out = {"AP": _ap(one, params, 0), "AP50": _ap(one, params, 0, iou=0.5)}
    out.update({f"AP_{n}": _ap(one, params, 1 + i) for i, n in enumerate(BUCKET_NAMES)})
    return out
