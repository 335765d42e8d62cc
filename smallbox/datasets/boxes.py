"""Box format conversions. Formats are named at every call: ``xywh_abs`` is COCO's
``[x_min, y_min, width, height]`` in pixels, ``xyxy_abs`` is ``[x_min, y_min, x_max, y_max]`` in
pixels, ``cxcywh_norm`` is YOLO's ``[x_center, y_center, width, height]`` divided by the image
size. Every function takes and returns arrays of shape ``[N, 4]`` (float64)."""

from __future__ import annotations

import numpy as np


def _as_boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def xywh_abs_to_xyxy_abs(boxes) -> np.ndarray:
    b = _as_boxes(boxes).copy()
    b[:, 2:] += b[:, :2]
    return b


def xyxy_abs_to_xywh_abs(boxes) -> np.ndarray:
    b = _as_boxes(boxes).copy()
    b[:, 2:] -= b[:, :2]
    return b


def xywh_abs_to_cxcywh_norm(boxes, width: float, height: float) -> np.ndarray:
    b = _as_boxes(boxes).copy()
    b[:, :2] += b[:, 2:] / 2
    b[:, [0, 2]] /= width
    b[:, [1, 3]] /= height
    return b


def cxcywh_norm_to_xywh_abs(boxes, width: float, height: float) -> np.ndarray:
    b = _as_boxes(boxes).copy()
    b[:, [0, 2]] *= width
    b[:, [1, 3]] *= height
    b[:, :2] -= b[:, 2:] / 2
    return b


def xyxy_abs_to_cxcywh_norm(boxes, width: float, height: float) -> np.ndarray:
    return xywh_abs_to_cxcywh_norm(xyxy_abs_to_xywh_abs(boxes), width, height)


def cxcywh_norm_to_xyxy_abs(boxes, width: float, height: float) -> np.ndarray:
    return xywh_abs_to_xyxy_abs(cxcywh_norm_to_xywh_abs(boxes, width, height))
