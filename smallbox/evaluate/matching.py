"""COCO matching computed once per image, and COCO AP from it for any multiset of images.

Why by hand: pycocotools and faster-coco-eval match every image again on every call, and a
bootstrap needs AP on a thousand resampled image sets. Matching depends only on the image, so
:func:`match_images` applies the rules of ``COCOeval.evaluateImg`` once (per image and category:
the 100 best-scored detections, greedy by score, crowd and out-of-range ground truth ignored,
unmatched detections outside the area range ignored), and :func:`average_precision` then does
``COCOeval.accumulate``'s 101-point interpolated precision with numpy for image *weights* (how
often each image was drawn). On the full image set it equals pycocotools to float rounding
(tests/test_significance.py checks it, and checks resamples against COCOeval on duplicated
images).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..datasets.buckets import AREA_MAX, BUCKET_NAMES, SizeBuckets
from ..datasets.coco import CocoDataset
from ..errors import SmallboxError

# COCOeval.Params' thresholds, built the same way so the floats are identical.
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
ALL_RANGE = (0.0, AREA_MAX)
# metric name -> (size range or None for all areas, IoU threshold or None for .50:.95); a size
# metric is AP_<range name> of a bucket set (COCO's three below; any set's names: metric_names)
METRICS = {"AP": (None, None), "AP50": (None, 0.5), "AP75": (None, 0.75),
           **{f"AP_{b}": (b, None) for b in BUCKET_NAMES}}


def metric_names(buckets: SizeBuckets | None = None) -> list[str]:
    """The metrics the test and the reports compute: AP, AP50, AP75 and AP_<range> of ``buckets``."""
    names = BUCKET_NAMES if buckets is None else buckets.names
    return ["AP", "AP50", "AP75", *(f"AP_{n}" for n in names)]


def is_metric(metric: str, buckets: SizeBuckets | None = None) -> bool:
    """A metric name known for ``buckets`` (any set's range names when None: AP_<word>)."""
    if metric in ("AP", "AP50", "AP75"):
        return True
    if buckets is None:
        return metric.startswith("AP_") and len(metric) > 3
    return metric in metric_names(buckets)


@dataclass
class CategoryMatches:
    """One category's detections over all images, in ``COCOeval.accumulate``'s order (score
    descending; ties by image order, then by order in the file), less those that cannot change
    AP (ignored at every threshold, or after the last true positive).

    Attributes:
        det_image: ``[D]`` image index of each detection.
        tp: ``[T, D]`` bool, matched to a counted ground-truth box at IoU threshold ``t``.
        ignored: ``[T, D]`` bool, neither true nor false positive at ``t``.
        gt_count: ``[N]`` counted (not ignored) ground-truth boxes per image.
    """

    det_image: np.ndarray
    tp: np.ndarray
    ignored: np.ndarray
    gt_count: np.ndarray


@dataclass
class RangeMatches:
    """The matches of one prediction set for one area range ``[lo, hi]`` (closed, as COCO)."""

    area_range: tuple[float, float]
    categories: list[CategoryMatches]
    n_images: int


def metric_range(metric: str, buckets: SizeBuckets) -> tuple[tuple[float, float], float | None]:
    """``(area range, IoU threshold or None)`` of a metric name (``AP``, ``AP50``, ``AP75``, or
    ``AP_<range>`` of ``buckets``: ``AP_small`` of COCO's, ``AP_tiny`` of AI-TOD's ...)."""
    if not is_metric(metric, buckets):
        raise SmallboxError(f"unknown metric {metric!r} for size ranges {buckets.describe()}: choose one of "
                            f"{', '.join(metric_names(buckets))}")
    if metric in ("AP", "AP50", "AP75"):
        return ALL_RANGE, METRICS[metric][1]
    lo, hi = {name: (lo, hi) for name, lo, hi in buckets.ranges()}[metric[3:]]
    return (lo, hi), None


def box_iou_xywh(dets_xywh_abs: np.ndarray, gts_xywh_abs: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU ``[D, G]`` as pycocotools' ``maskUtils.iou`` computes it for boxes (same float
    operations); against a crowd box the union is the detection's own area."""
    d, g = dets_xywh_abs[:, None, :], gts_xywh_abs[None, :, :]
    w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    det_area, gt_area = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    union = np.where(crowd[None, :], det_area, det_area + gt_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def greedy_match(iou: np.ndarray, gt_ignored: np.ndarray, gt_crowd: np.ndarray, thrs=IOU_THRS):
    """``COCOeval.evaluateImg``'s matching for all IoU thresholds at once.

    Args:
        iou: ``[D, G]``, detections by descending score, ground truth with counted boxes first.
        gt_ignored, gt_crowd: ``[G]`` bool.
    Returns:
        ``matched [T, D]`` and ``matched_ignored [T, D]`` (matched to an ignored box), bool.
    """
    n_t, (n_d, n_g) = len(thrs), iou.shape
    matched = np.zeros((n_t, n_d), bool)
    matched_ignored = np.zeros((n_t, n_d), bool)
    if n_g == 0:
        return matched, matched_ignored
    thr = np.minimum(np.asarray(thrs), 1 - 1e-10)
    taken = np.zeros((n_t, n_g), bool)
    for d in np.flatnonzero(iou.max(axis=1) >= thr.min()):
        cands = np.flatnonzero(iou[d] >= thr.min())
        m = _best_available(iou[d, cands], thr, taken[:, cands], gt_ignored[cands], gt_crowd[cands])
        hit = m >= 0
        g = cands[m[hit]]
        matched[hit, d] = True
        matched_ignored[hit, d] = gt_ignored[g]
        taken[np.flatnonzero(hit), g] = True
    return matched, matched_ignored


def match_pairs(iou: np.ndarray, thr: float) -> np.ndarray:
    """``[G]`` index of the detection matched to each ground-truth box (``-1``: none), by
    :func:`greedy_match`'s rule at one IoU threshold (no crowd or ignored boxes).

    Args:
        iou: ``[D, G]``, detections by descending score.
    """
    n_d, n_g = iou.shape
    det_of_gt = np.full(n_g, -1)
    if n_g == 0:
        return det_of_gt
    thr_arr = np.array([min(thr, 1 - 1e-10)])
    none = np.zeros(n_g, bool)
    taken = np.zeros((1, n_g), bool)
    for d in range(n_d):
        g = int(_best_available(iou[d], thr_arr, taken, none, none)[0])
        if g >= 0:
            det_of_gt[g] = d
            taken[0, g] = True
    return det_of_gt


def _best_available(iou_row, thr, taken, ignored, crowd) -> np.ndarray:
    """``[T]`` index into the candidate boxes that one detection matches at each threshold, -1
    for none: the best IoU >= thr among free (or crowd) counted boxes, else among ignored ones;
    ties go to the later box, as in COCOeval (`if iou < best: continue` lets an equal replace)."""
    ok = (iou_row[None, :] >= thr[:, None]) & (~taken | crowd[None, :])
    if len(iou_row) == 1:  # the common case: a single box overlaps enough
        return np.where(ok[:, 0], 0, -1)
    m = np.full(len(thr), -1)
    for pool in (~ignored, ignored):
        vals = np.where(ok & pool[None, :], iou_row[None, :], -1.0)
        last_best = vals.shape[1] - 1 - np.argmax(vals[:, ::-1], axis=1)
        m = np.where((m < 0) & (vals.max(axis=1) >= 0), last_best, m)
    return m


def match_images(gt, preds: list[dict], area_ranges, max_dets: int = 100) -> list[RangeMatches]:
    """Match ``preds`` to ``gt`` once per image, for each area range.

    Args:
        gt: a :class:`CocoDataset` or COCO dict; images are taken in ascending id order (index
            ``i`` of the weights in :func:`average_precision` is the ``i``-th smallest id).
        preds: validated COCO results (xywh_abs).
        area_ranges: ``[(lo, hi), ...]`` areas in pixels², closed ranges as in COCO.
    Returns:
        one :class:`RangeMatches` per range.
    """
    data = gt.data if isinstance(gt, CocoDataset) else gt
    image_ids = sorted(im["id"] for im in data["images"])
    category_ids = sorted(c["id"] for c in data["categories"])
    gts, dets = _group(data["annotations"]), _group(preds)
    per_range = [defaultdict(list) for _ in area_ranges]
    for i, image_id in enumerate(image_ids):
        for k, cat in enumerate(category_ids):
            g, d = gts.get((image_id, cat), []), dets.get((image_id, cat), [])
            if not g and not d:
                continue
            for r, matched in enumerate(_match_one(g, d, area_ranges, max_dets)):
                per_range[r][k].append((i, *matched))
    return [RangeMatches(tuple(rng), [_concat(per_range[r][k], len(image_ids)) for k in range(len(category_ids))],
                         len(image_ids)) for r, rng in enumerate(area_ranges)]


def _group(items) -> dict:
    grouped = defaultdict(list)
    for x in items:
        grouped[x["image_id"], x["category_id"]].append(x)
    return grouped


def _match_one(gts: list, dets: list, area_ranges, max_dets: int):
    """One image and category: per area range, ``(scores [D], tp [T, D], ignored [T, D],
    counted ground truth)`` of its ``max_dets`` best detections in descending score order."""
    gt_area = np.array([g["area"] for g in gts], dtype=np.float64)
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    det_order = np.argsort([-d["score"] for d in dets], kind="mergesort")[:max_dets]
    scores = np.array([dets[j]["score"] for j in det_order], dtype=np.float64)
    det_xywh = np.array([dets[j]["bbox"] for j in det_order], dtype=np.float64).reshape(-1, 4)
    gt_xywh = np.array([g["bbox"] for g in gts], dtype=np.float64).reshape(-1, 4)
    iou = box_iou_xywh(det_xywh, gt_xywh, crowd)
    det_area = det_xywh[:, 2] * det_xywh[:, 3]
    out = []
    for lo, hi in area_ranges:
        ignored = crowd | (gt_area < lo) | (gt_area > hi)
        gt_order = np.argsort(ignored, kind="mergesort")
        matched, matched_ignored = greedy_match(iou[:, gt_order], ignored[gt_order], crowd[gt_order])
        outside = (det_area < lo) | (det_area > hi)
        det_ignored = matched_ignored | (~matched & outside[None, :])
        out.append((scores, matched & ~det_ignored, det_ignored, int((~ignored).sum())))
    return out


def _concat(parts: list, n_images: int) -> CategoryMatches:
    gt_count = np.zeros(n_images, np.int64)
    if not parts:
        empty = np.zeros((len(IOU_THRS), 0), bool)
        return CategoryMatches(np.zeros(0, np.int64), empty, empty, gt_count)
    for i, _, _, _, n in parts:
        gt_count[i] = n
    image = np.concatenate([np.full(len(s), i) for i, s, _, _, _ in parts])
    scores = np.concatenate([s for _, s, _, _, _ in parts])
    tp = np.concatenate([t for _, _, t, _, _ in parts], axis=1)
    ignored = np.concatenate([g for _, _, _, g, _ in parts], axis=1)
    order = np.argsort(-scores, kind="mergesort")
    # Keep the arrays short: a detection ignored at every threshold never counts, and those
    # after the last true positive change no precision that AP reads.
    counted = ~ignored[:, order].all(axis=0)
    hits = np.flatnonzero(tp[:, order].any(axis=0))
    order = order[counted & (np.arange(len(order)) <= (hits[-1] if hits.size else -1))]
    return CategoryMatches(image[order], tp[:, order], ignored[:, order], gt_count)


def average_precision(matches: RangeMatches, weights=None, iou: float | None = None) -> np.ndarray:
    """COCO AP (IoU .50:.95, or at one threshold ``iou``) for each row of image weights.

    Args:
        weights: ``[B, N]`` non-negative integers, how many times each image is in the set
            (``None``: the full set once). A duplicated image counts as a new image.
    Returns:
        ``[B]`` AP: the mean over categories with ground truth in the set and over IoU
        thresholds of the 101-point interpolated precision; ``-1`` where no category has any.
    """
    weights = _as_weights(weights, matches.n_images)
    t_index = range(len(IOU_THRS)) if iou is None else [int(np.flatnonzero(np.isclose(IOU_THRS, iou))[0])]
    total = np.zeros(len(weights))
    count = np.zeros(len(weights))
    for cat in matches.categories:
        for q, valid in category_precision(cat, weights, t_index):
            total += np.where(valid, q.mean(axis=1), 0.0)
            count += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), -1.0)


def _as_weights(weights, n_images: int) -> np.ndarray:
    if weights is None:
        return np.ones((1, n_images), np.int64)
    weights = np.asarray(weights, dtype=np.int64)
    if weights.ndim != 2 or weights.shape[1] != n_images:
        raise ValueError(f"weights must be [B, {n_images}], got {weights.shape}")
    return weights


def category_precision(cat: CategoryMatches, weights: np.ndarray, t_index):
    """``COCOeval.accumulate``'s precision at the 101 recall thresholds, for one category, for
    each row of ``weights [B, N]``; yields ``(q [B, 101], valid [B])`` per IoU threshold index
    in ``t_index`` (``valid``: the category has counted ground truth in that image set).

    Only true positives are visited: the interpolated precision (the best precision at any
    recall >= r) is always reached at a true positive, and the precision there only needs the
    weighted count of counted detections up to it: all detections up to it, less the ignored.
    """
    n_pos = weights @ cat.gt_count
    valid = n_pos > 0
    det_w = weights[:, cat.det_image]
    dets_cum = np.cumsum(det_w, axis=1)
    for t in t_index:
        q = np.zeros((len(weights), len(REC_THRS)))
        tp_at = np.flatnonzero(cat.tp[t])
        if tp_at.size == 0 or not valid.any():
            yield q, valid
            continue
        tp_cum = np.cumsum(det_w[:, tp_at], axis=1).astype(np.float64)
        counted_cum = (dets_cum[:, tp_at] - _ignored_before(det_w, cat.ignored[t], tp_at)).astype(np.float64)
        precision = tp_cum / (counted_cum + np.spacing(1))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        first = _first_reaching(tp_cum, n_pos)
        inside = first < tp_at.size
        rows = np.broadcast_to(np.arange(len(weights))[:, None], first.shape)
        q[inside] = envelope[rows[inside], first[inside]]
        q[~valid] = 0.0
        yield q, valid


def _ignored_before(det_w: np.ndarray, ignored: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``[B, len(positions)]`` weighted count of ignored detections before each position."""
    ignored_at = np.flatnonzero(ignored)
    if ignored_at.size == 0:
        return np.zeros((len(det_w), len(positions)), det_w.dtype)
    cum = np.concatenate([np.zeros((len(det_w), 1), det_w.dtype), np.cumsum(det_w[:, ignored_at], axis=1)], axis=1)
    return cum[:, np.searchsorted(ignored_at, positions)]


def _first_reaching(tp_cum: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """``[B, R]``: per row, the first true positive whose recall ``tp / n_pos`` (float, as
    pycocotools computes it) reaches each recall threshold; ``J`` where none does."""
    n = np.maximum(n_pos, 1).astype(np.float64)[:, None]
    # Smallest whole count k with float(k / n) >= r: ceil, then fix float rounding either way.
    k = np.ceil(REC_THRS[None, :] * n)
    k = np.where((k - 1) / n >= REC_THRS[None, :], k - 1, k)
    k = np.where(k / n < REC_THRS[None, :], k + 1, k)
    n_rows, n_tp = tp_cum.shape
    big = float(max(tp_cum.max(initial=0), k.max()) + 2)
    offset = np.arange(n_rows)[:, None] * big
    flat = (tp_cum + offset).ravel()
    return np.searchsorted(flat, (k + offset).ravel(), side="left").reshape(k.shape) - np.arange(n_rows)[:, None] * n_tp


def precision_recall_curve(matches: RangeMatches, iou: float = 0.5) -> np.ndarray:
    """``[101]`` interpolated precision at recall ``REC_THRS`` on the full image set, averaged
    over the categories with ground truth in the range (as COCO's AP averages them); all -1
    where none has."""
    t = int(np.flatnonzero(np.isclose(IOU_THRS, iou))[0])
    weights = _as_weights(None, matches.n_images)
    curves = [q[0] for c in matches.categories for q, valid in category_precision(c, weights, [t]) if valid[0]]
    return np.mean(curves, axis=0) if curves else np.full(len(REC_THRS), -1.0)
