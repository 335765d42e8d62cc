"""How much two boxes overlap: the one IoU of box fusion (ensembles and the merge of sliced
inference). Boxes are ``xyxy`` (absolute or normalised, both the same).

One arithmetic, in two forms:

- :func:`iou_xyxy` / :func:`ios_xyxy`: numpy, shapes broadcast, so one function serves
  one-to-one, one-to-many and all-pairs uses (sliced inference's merge);
- :func:`iou_rows`: compiled by numba, one pair of boxes (rows of ``[N, 4]`` arrays), for the
  inner loops of the ensemble kernels (WBF, NMS, soft-NMS, NMW), where a numpy call per pair
  would cost more than the arithmetic.

Both compute ensemble_boxes' arithmetic (SAHI's is the same), the same operations in the same
order: intersection ``max(min(x2) - max(x1), 0) * max(min(y2) - max(y1), 0)``, area
``(x2 - x1) * (y2 - y1)``, IoU ``inter / (area_a + area_b - inter)``, and 0 where the union is
not positive. Fusion must reproduce those libraries bit for bit (a box whose IoU equals the
threshold matches or not by the last bit), so the two forms agree bit for bit
(tests/test_ensemble.py checks it on random and tie-constructed boxes). numba compiles without
``fastmath``: it neither reorders these operations nor fuses a multiply and an add.

ensemble_boxes writes this IoU four times, with differences that change no bit on the boxes
fusion sees (clipped to [0, 1], zero-area boxes dropped, so every union is positive), which is
why one function serves all four kernels:

- NMW's numba ``bb_intersection_over_union`` returns 0 early when the intersection is 0; the
  division gives 0 there too;
- soft-NMS multiplies the y overlap by the x overlap and computes the areas once, before its
  walk: a product does not depend on the order of its factors, nor an area on when it is computed;
- ``max(a, b)`` / ``a + b`` with the operands the other way round: both are exact in either order.

numba caches each compiled function keyed on its own source file only: the ensemble kernels
compiled with an older :func:`iou_rows` keep it after this file changes. After editing this
file, delete ``smallbox/fusion/__pycache__/*.nbi`` and ``*.nbc`` (or the user cache's copies).
(The evaluator's IoU is pycocotools', on ``xywh`` boxes with crowd rules:
:func:`smallbox.evaluate.matching.box_iou_xywh`.)
"""

from __future__ import annotations

import numba
import numpy as np


def njit_cached(fn):
    """``fn`` compiled by numba on its first call, in numba's default strict IEEE mode (fusion
    needs ensemble_boxes' exact roundings), and cached on disk: beside this package
    (``__pycache__``) or, where the package folder is read-only, in the user's cache folder
    (``NUMBA_CACHE_DIR`` overrides both), so later processes load the machine code instead of
    compiling it. Where no folder is writable, every process compiles (numba would refuse to
    import the module otherwise)."""
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(fn)


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


@njit_cached
def iou_rows(a, i, b, j):
    """IoU of box ``a[i]`` and box ``b[j]`` (``a [N, 4]``, ``b [M, 4]`` float64), compiled:
    :func:`iou_xyxy` of one pair, bit for bit."""
    inter = max(min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]), 0.0) * \
        max(min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]), 0.0)
    union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
    return inter / union if union > 0.0 else 0.0
