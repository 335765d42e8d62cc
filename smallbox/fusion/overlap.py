"""How much two boxes overlap: the one IoU of box fusion (ensembles and the merge of sliced
inference). Boxes are ``xyxy`` (absolute or normalised, both the same); shapes broadcast, so one
function serves one-to-one, one-to-many and all-pairs uses.

The arithmetic is ensemble_boxes' (and SAHI's, which computes the same): intersection
``max(min(x2) - max(x1), 0) * max(min(y2) - max(y1), 0)``, area ``(x2 - x1) * (y2 - y1)``,
IoU ``inter / (area_a + area_b - inter)``. Fusion must reproduce those libraries bit for bit (a
box whose IoU equals the threshold matches or not by the last bit), so every caller uses these
operations in this order. A zero denominator gives 0. (The evaluator's IoU is pycocotools', on
``xywh`` boxes with crowd rules: :func:`smallbox.evaluate.matching.box_iou_xywh`.)
"""

from __future__ import annotations

import numpy as np


def area_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[..., 4]`` -> ``[...]``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def intersection_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of ``a [..., 4]`` and ``b [..., 4]`` (broadcast) -> ``[...]``."""
    w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    return w * h


def iou_xyxy(a: np.ndarray, b: np.ndarray, area_a=None, area_b=None) -> np.ndarray:
    """IoU of ``a [..., 4]`` and ``b [..., 4]`` (broadcast); areas may be given precomputed."""
    inter = intersection_xyxy(a, b)
    area_a = area_xyxy(a) if area_a is None else area_a
    area_b = area_xyxy(b) if area_b is None else area_b
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros(np.broadcast(inter, union).shape), where=union > 0)


def ios_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area (SAHI's IOS), broadcast."""
    inter = intersection_xyxy(a, b)
    smaller = np.minimum(area_xyxy(a), area_xyxy(b))
    return np.divide(inter, smaller, out=np.zeros(np.broadcast(inter, smaller).shape), where=smaller > 0)
