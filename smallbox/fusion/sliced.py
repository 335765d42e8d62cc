"""Sliced (tiled) inference for small objects, as SAHI does it: predict on overlapping tiles
(plus the whole image), shift the boxes back, merge duplicates per class.

Any model plugs in through a ``predict_fn(image_bgr [H, W, 3] uint8) -> (xyxy_abs [N, 4],
scores [N], labels [N])`` (labels: class indices);
:func:`smallbox.adapters.predict_fn.load_predict_fn` builds one for an Ultralytics YOLO model
(``.pt`` / ``.yaml``) or a ``smallbox tv`` checkpoint.

Why not call SAHI: its tiling and merging are a few lines of array code, but its pipeline wraps
every box in an ``ObjectPrediction`` object and predicts one tile per call. The tiles here are
SAHI's (``sahi.slicing.get_slice_bboxes``, same loop) and the merges give SAHI's results
(``GREEDYNMM`` / ``NMS`` with ``IOU`` / ``IOS``, class-aware, ``metric >= threshold``); the tests
compare both with SAHI itself.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import SmallboxError
from .overlap import ios_xyxy, iou_xyxy

PredictFn = Callable[[np.ndarray], tuple]
MERGES = ("greedy", "nms")
METRICS = ("ios", "iou")


def slice_windows(width: int, height: int, tile: int, overlap: float) -> np.ndarray:
    """Tile windows ``[T, 4]`` (xyxy_abs, int), exactly SAHI's ``get_slice_bboxes``: tiles step
    by ``tile - int(overlap * tile)``; the last row / column is moved back inside the image."""
    if tile <= 0 or not 0 <= overlap < 1:
        raise SmallboxError(f"tile must be positive and overlap in [0, 1), got {tile} and {overlap}")
    step_overlap = int(overlap * tile)
    windows = []
    y_min = y_max = 0
    while y_max < height:
        x_min = x_max = 0
        y_max = y_min + tile
        while x_max < width:
            x_max = x_min + tile
            if y_max > height or x_max > width:
                x_max, y_max = min(width, x_max), min(height, y_max)
                windows.append([max(0, x_max - tile), max(0, y_max - tile), x_max, y_max])
                x_min, y_min = windows[-1][0], windows[-1][1]
            else:
                windows.append([x_min, y_min, x_max, y_max])
            x_min = x_max - step_overlap
        y_min = y_max - step_overlap
    return np.array(windows, dtype=np.int64).reshape(-1, 4)


def predict_sliced(image_bgr: np.ndarray, predict_fn: PredictFn, tile: int = 512, overlap: float = 0.2,
                   full: bool = True, merge: str = "greedy", metric: str = "ios", threshold: float = 0.5):
    """Predict on every tile (and the whole image), shift back, merge.

    Args:
        image_bgr: ``[H, W, 3]`` uint8.
        predict_fn: the model, see the module docstring.
        tile, overlap: tile side in pixels and overlap ratio (SAHI's ``slice_height/width``,
            ``overlap_height/width_ratio``).
        full: also predict on the whole image (SAHI's ``perform_standard_pred``).
        merge, metric, threshold: ``greedy`` (merge into the best box: union box, best score) or
            ``nms``; ``ios`` (intersection over the smaller box) or ``iou``; match when
            ``metric >= threshold``.
    Returns:
        ``(xyxy_abs [N, 4] float64, scores [N], labels [N] int)``, by descending score.
    """
    height, width = image_bgr.shape[:2]
    parts = []
    for x0, y0, x1, y1 in slice_windows(width, height, tile, overlap).tolist():
        boxes, scores, labels = _as_arrays(predict_fn(np.ascontiguousarray(image_bgr[y0:y1, x0:x1])))
        parts.append((boxes + [x0, y0, x0, y0], scores, labels))
    if full:
        parts.append(_as_arrays(predict_fn(image_bgr)))
    boxes, scores, labels = (np.concatenate(p) for p in zip(*parts))
    return merge_predictions(boxes, scores, labels, merge, metric, threshold)


def _as_arrays(pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, scores, labels = pred
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64).reshape(-1),
            np.asarray(labels, dtype=np.int64).reshape(-1))


def merge_predictions(boxes, scores, labels, merge: str = "greedy", metric: str = "ios", threshold: float = 0.5):
    """Merge duplicates class by class, as SAHI's ``GreedyNMMPostprocess`` / ``NMSPostprocess``.

    Boxes go by descending score (equal scores: by x1, y1, x2, y2). NMS keeps a box unless a
    kept one matches it. Greedy NMM: a kept box claims every unclaimed later box matching it,
    then grows into the union with each claimed box that still matches the grown box; its score
    stays the best one. Returns ``(xyxy_abs [K, 4], scores [K], labels [K])`` by descending score.
    """
    if merge not in MERGES or metric not in METRICS:
        raise SmallboxError(f"merge must be one of {MERGES} and metric one of {METRICS}")
    out = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        b, s = boxes[idx], scores[idx]
        order = np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -s))
        match = _metric_matrix(b, metric) >= threshold
        suppressed = np.zeros(len(idx), dtype=bool)
        for pos, i in enumerate(order):
            if suppressed[i]:
                continue
            later = order[pos + 1:]
            claimed = later[~suppressed[later] & match[i, later]]
            suppressed[claimed] = True
            box = b[i] if merge == "nms" else _grow(b[i], b[claimed], metric, threshold)
            out.append((box, s[i], label))
    if not out:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    boxes, scores, labels = np.array([o[0] for o in out]), np.array([o[1] for o in out]), np.array([o[2] for o in out])
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], labels[order]


def _metric_matrix(b: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise IoU or IoS ``[N, N]`` (float32, as SAHI's matrix)."""
    fn = iou_xyxy if metric == "iou" else ios_xyxy
    return fn(b[:, None, :], b[None, :, :]).astype(np.float32)


def _grow(box: np.ndarray, claimed: np.ndarray, metric: str, threshold: float) -> np.ndarray:
    for other in claimed:
        if _metric_matrix(np.stack([box, other]), metric)[0, 1] >= threshold:
            box = np.concatenate([np.minimum(box[:2], other[:2]), np.maximum(box[2:], other[2:])])
    return box
