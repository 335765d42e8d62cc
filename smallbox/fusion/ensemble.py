"""Box fusion of several models' detections: WBF, NMS, soft-NMS and NMW, with the results of
`ensemble_boxes <https://github.com/ZFTurbo/Weighted-Boxes-Fusion>`_ (1.0.9) — same boxes,
scores, labels and order — but vectorised over all images and classes at once.

Why not call ensemble_boxes: it runs a Python loop per box and per image (about 1.4 s for the
two bundled DeepPCB prediction files); here every image and class advances together, one box
per step ("lockstep"), so the Python loop runs as many times as the largest group has boxes.
The clustering itself stays sequential, exactly as in ensemble_boxes, because its result depends
on the order in which boxes join clusters.

Boxes are ``xyxy_norm`` (divided by the image size), as ensemble_boxes expects. What
ensemble_boxes does that a user may not expect, and which is kept for parity:

- boxes are clipped to [0, 1], corners swapped where x2 < x1, zero-area boxes dropped;
- WBF and NMW fuse coordinates in float32 (their fused boxes and scores carry float32 rounding);
- WBF scores are rescaled after fusion (``conf_type``; with ``avg`` a box found by one of two
  models gets half its score);
- NMS / soft-NMS scale scores by ``weight / sum(weights)`` only when weights are given;
- soft-NMS returns the *original* scores of the boxes it keeps; the decayed scores only decide
  which boxes survive (``decayed > thresh``);
- NMS and soft-NMS results are ordered by class, then by score; WBF and NMW by score.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np

from ..errors import SmallboxError
from ..predictions.results import to_coco_results

METHODS = ("wbf", "nms", "soft-nms", "nmw")
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
DEFAULT_IOU = {"wbf": 0.55, "nms": 0.5, "soft-nms": 0.5, "nmw": 0.55}
SOFT_METHODS = {"linear": 1, "gaussian": 2}
# Groups are padded to the largest one in a chunk: bound the padded size.
MAX_CHUNK_ELEMENTS = 2_000_000


@dataclass
class Detections:
    """Flat detections of many images and models.

    Attributes:
        image (np.ndarray): ``[N]`` int, image index.
        label (np.ndarray): ``[N]`` int, class label (any integer: category id or class index).
        score (np.ndarray): ``[N]`` float64.
        xyxy_norm (np.ndarray): ``[N, 4]`` float64, ``[x1, y1, x2, y2]`` divided by the image size.
        model (np.ndarray): ``[N]`` int, which model (0..M-1) predicted the box. The order of
            boxes of one image and model is the order they are given to ensemble_boxes in.
    """

    image: np.ndarray
    label: np.ndarray
    score: np.ndarray
    xyxy_norm: np.ndarray
    model: np.ndarray

    def __len__(self):
        return len(self.score)

    def take(self, index) -> "Detections":
        return Detections(self.image[index], self.label[index], self.score[index], self.xyxy_norm[index],
                          self.model[index])


@dataclass
class Fused:
    """Fused detections, in ensemble_boxes' output order within each image (images ascending).

    Attributes: ``image [K]``, ``label [K]``, ``score [K]`` float64, ``xyxy_norm [K, 4]`` float64.
    """

    image: np.ndarray
    label: np.ndarray
    score: np.ndarray
    xyxy_norm: np.ndarray


def fuse(dets: Detections, n_models: int, method: str = "wbf", weights=None, iou_thr: float | None = None,
         skip_box_thr: float = 0.0, conf_type: str = "avg", allows_overflow: bool = False,
         sigma: float = 0.5, thresh: float = 0.001, soft_method: str = "gaussian") -> Fused:
    """Fuse the detections of ``n_models`` models, per image and per label.

    Equal to calling, for every image, ``ensemble_boxes.weighted_boxes_fusion`` (``"wbf"``),
    ``nms``, ``soft_nms`` or ``non_maximum_weighted`` (``"nmw"``) on that image's boxes.

    Args:
        weights: one per model, or None (ensemble_boxes' default; for NMS None means no scaling).
        iou_thr: match / suppression IoU; default per method as in ensemble_boxes.
        skip_box_thr: boxes scoring below it are dropped first (for every method).
        conf_type, allows_overflow: WBF's score options.
        sigma, thresh, soft_method: soft-NMS's ``sigma``, keep threshold on the decayed score,
            and ``"gaussian"`` or ``"linear"`` decay.
    """
    if method not in METHODS:
        raise SmallboxError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if conf_type not in CONF_TYPES:
        raise SmallboxError(f"conf-type must be one of {', '.join(CONF_TYPES)}, got {conf_type!r}")
    if weights is not None and len(weights) != n_models:
        raise SmallboxError(f"got {len(weights)} weights for {n_models} prediction files")
    iou_thr = DEFAULT_IOU[method] if iou_thr is None else float(iou_thr)
    if not 0 <= iou_thr <= 1:
        raise SmallboxError(f"IoU threshold must be in [0, 1], got {iou_thr}")
    if skip_box_thr > 0:
        dets = dets.take(np.flatnonzero(~(dets.score < skip_box_thr)))
    if method == "wbf":
        w = np.ones(n_models) if weights is None else np.array(weights)
        return _wbf(dets, w, iou_thr, conf_type, allows_overflow)
    if method == "nmw":
        w = np.ones(n_models) if weights is None else np.array(weights)
        return _nmw(dets, w / max(w), iou_thr)
    if soft_method not in SOFT_METHODS:
        raise SmallboxError(f"soft-NMS method must be one of {', '.join(SOFT_METHODS)}, got {soft_method!r}")
    return _nms(dets, weights, iou_thr, method == "soft-nms", SOFT_METHODS[soft_method], sigma, thresh)


# ---------------------------------------------------------------------------------------------
# Input cleaning as ensemble_boxes does it


def _clean_boxes(dets: Detections) -> Detections:
    """Corners ordered, coordinates clipped to [0, 1], zero-area boxes dropped (ensemble_boxes'
    ``prefilter_boxes`` / ``prepare_boxes``); the order of the rest is kept."""
    b = dets.xyxy_norm
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    b = np.clip(np.stack([x1, y1, x2, y2], axis=1), 0.0, 1.0)
    keep = np.flatnonzero((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) != 0.0)
    out = dets.take(keep)
    out.xyxy_norm = b[keep]
    return out


# ---------------------------------------------------------------------------------------------
# Grouping: one group per (image, label), boxes in processing order


@dataclass
class _Groups:
    """Detections grouped per (image, label), padded into chunks of similar size.

    ``order`` lists detection positions group after group; ``start[g]``, ``size[g]`` locate
    group ``g`` in it; ``image[g]``, ``label[g]`` name it.
    """

    order: np.ndarray
    start: np.ndarray
    size: np.ndarray
    image: np.ndarray
    label: np.ndarray

    def chunks(self, shrink: int = 2):
        """Yield ``(group ids [G], padded positions [G, n_max] (-1 padding))``, groups sorted by
        size descending, so the groups still running at step ``j`` are a prefix.

        A chunk holds groups down to ``n_max // shrink`` boxes: the Python loop runs ``n_max``
        steps per chunk, and work per step grows with the padded width, so clustering (work per
        step ~ clusters so far) wants few chunks and NMS (work ~ boxes left) wants tight ones."""
        by_size = np.argsort(-self.size, kind="stable")
        sizes = self.size[by_size]
        i = 0
        while i < len(by_size):
            n_max = int(sizes[i])
            end = min(len(by_size), i + max(1, MAX_CHUNK_ELEMENTS // n_max))
            end = i + max(1, int(np.searchsorted(-sizes[i:end], -(n_max // shrink), side="right")))
            ids = by_size[i:end]
            yield ids, self._padded(ids, n_max)
            i = end

    def _padded(self, ids: np.ndarray, n_max: int) -> np.ndarray:
        sizes = self.size[ids]
        rows = np.repeat(np.arange(len(ids)), sizes)
        cols = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        padded = np.full((len(ids), n_max), -1, dtype=np.int64)
        padded[rows, cols] = self.order[np.repeat(self.start[ids], sizes) + cols]
        return padded


def _group(image, label, score=None, tie_order=None) -> _Groups:
    """Group positions ``0..N-1`` by (image, label); within a group keep the given order or,
    with ``score``, sort by descending score. Equal scores are ordered by ``tie_order(scores
    in given order) -> permutation``, the sort of the library being matched."""
    order = np.lexsort((label, image)) if score is None else np.lexsort((-score, label, image))
    gi, gl = image[order], label[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (gi[1:] != gi[:-1]) | (gl[1:] != gl[:-1])
    start = np.flatnonzero(new)
    size = np.diff(np.append(start, len(order)))
    if score is not None:
        _fix_ties(order, start, size, score, tie_order)
    return _Groups(order, start, size, gi[start], gl[start])


def _fix_ties(order, start, size, score, tie_order):
    """Where a group holds equal scores, redo its order with the matched library's sort, on the
    scores in their original order (the order ensemble_boxes sees them in)."""
    s = score[order]
    tied = np.flatnonzero(s[1:] == s[:-1]) + 1
    if not len(tied):
        return
    group_of = np.searchsorted(start, tied, side="right") - 1
    tied_groups = np.unique(group_of[tied > start[group_of]])
    for g in tied_groups:
        sl = slice(start[g], start[g] + size[g])
        members = np.sort(order[sl])
        order[sl] = members[tie_order(score[members])]


def _numpy_descending(scores):
    """ensemble_boxes' ``scores.argsort()[::-1]`` in numpy."""
    return np.argsort(scores)[::-1]


def _numba_descending(scores):
    """ensemble_boxes' ``scores.argsort()[::-1]`` inside numba (NMS): numba's own quicksort
    (insertion sort up to 15 items), which orders equal scores differently from numpy's."""
    if len(scores) <= NUMBA_INSERTION_SORT_MAX:  # insertion sort is stable
        return np.argsort(scores, kind="stable")[::-1]
    try:
        from numba.misc.quicksort import make_py_quicksort
    except ImportError:  # numba comes with ensemble_boxes; without it, a stable order
        return np.argsort(scores, kind="stable")[::-1]
    global _NUMBA_ARGSORT
    if _NUMBA_ARGSORT is None:
        _NUMBA_ARGSORT = make_py_quicksort(is_argsort=True, is_np_array=True).run_quicksort
    return np.asarray(_NUMBA_ARGSORT(np.asarray(scores, dtype=np.float64)))[::-1]


_NUMBA_ARGSORT = None
NUMBA_INSERTION_SORT_MAX = 15  # numba.misc.quicksort.SMALL_QUICKSORT


def _iou_one_to_many(box, boxes):
    """IoU of ``box [A, 4]`` with ``boxes [A, K, 4]`` -> ``[A, K]``, with ensemble_boxes'
    arithmetic (same operations, same order, so equal IoUs compare equal)."""
    xa = np.maximum(boxes[..., 0], box[:, None, 0])
    ya = np.maximum(boxes[..., 1], box[:, None, 1])
    xb = np.minimum(boxes[..., 2], box[:, None, 2])
    yb = np.minimum(boxes[..., 3], box[:, None, 3])
    inter = np.maximum(xb - xa, 0) * np.maximum(yb - ya, 0)
    area_many = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    area_one = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    return inter / (area_many + area_one[:, None] - inter)


# ---------------------------------------------------------------------------------------------
# Weighted boxes fusion


class _Clusters:
    """Clusters of a chunk of ``G`` groups, at most ``K`` per group, stored flat: cluster ``k`` of
    group ``g`` is row ``g * K + k``. The boxes new boxes are matched against are kept per
    coordinate (``[4, G * K]``) with their areas; unused slots hold a far-away unit box, whose IoU
    with anything is 0, so it never wins a match (matching needs IoU > thr >= 0)."""

    def __init__(self, g: int, k: int):
        self.k = k
        self.count = np.zeros(g, dtype=np.int64)              # clusters per group
        self.rep_xyxy = np.empty((4, g * k))
        self.rep_xyxy[:] = np.array([[-3.0], [-3.0], [-2.0], [-2.0]])
        self.rep_area = np.ones(g * k)
        self.sum_xyxy = np.zeros((g * k, 4), dtype=np.float32)  # ensemble_boxes sums in float32
        self.conf = np.zeros(g * k)
        self._base = np.arange(g) * k

    def rep(self, flat: np.ndarray) -> np.ndarray:
        """Boxes ``[n, 4]`` of the given flat cluster rows."""
        return self.rep_xyxy[:, flat].T

    def set_rep(self, flat: np.ndarray, boxes: np.ndarray) -> None:
        self.rep_xyxy[:, flat] = boxes.T
        self.rep_area[flat] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def match(self, rows: int, box: np.ndarray, iou_thr: float) -> tuple[np.ndarray, np.ndarray]:
        """Best cluster of each of the first ``rows`` groups for its new box ``[rows, 4]``:
        ``(matched [rows] bool, flat cluster row [rows])``; the first best wins, IoU must be > thr.
        The arithmetic is ensemble_boxes' (same operations in the same order), so equal IoUs
        compare equal."""
        k = int(self.count[:rows].max()) if rows else 0
        if k == 0:
            return np.zeros(rows, dtype=bool), np.zeros(rows, dtype=np.int64)
        c = [self.rep_xyxy[i, : rows * self.k].reshape(rows, self.k)[:, :k] for i in range(4)]
        inter = np.maximum(np.minimum(c[2], box[:, 2:3]) - np.maximum(c[0], box[:, 0:1]), 0)
        inter *= np.maximum(np.minimum(c[3], box[:, 3:4]) - np.maximum(c[1], box[:, 1:2]), 0)
        area_one = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        union = self.rep_area[: rows * self.k].reshape(rows, self.k)[:, :k] + area_one[:, None]
        union -= inter
        iou = np.divide(inter, union, out=inter)
        best = iou.argmax(axis=1)
        return iou[np.arange(rows), best] > iou_thr, best + self._base[:rows]

    def new(self, r: np.ndarray, box: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Open a cluster for box ``r`` of each listed group; returns their flat rows. The cluster
        holds the box unchanged (float64), as ensemble_boxes' ``vstack`` does."""
        flat = self._base[r] + self.count[r]
        self.set_rep(flat, box[r])
        self.sum_xyxy[flat] = s[r, None] * box[r]
        self.conf[flat] = s[r]
        self.count[r] += 1
        return flat

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(group index in chunk [C], slot [C])`` of every cluster, in creation order per group."""
        g, slot = np.nonzero(np.arange(self.k)[None, :] < self.count[:, None])
        return g, slot


def _wbf(dets: Detections, weights: np.ndarray, iou_thr: float, conf_type: str, allows_overflow: bool) -> Fused:
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    # [label, score * weight, weight, model, x1, y1, x2, y2] in ensemble_boxes' terms.
    wscore = dets.score * weights[dets.model]
    groups = _group(dets.image, dets.label, wscore, _numpy_descending)
    out_group, out_slot, out_xyxy, out_score = [], [], [], []
    for ids, padded in groups.chunks(8):
        cl = _Clusters(len(ids), padded.shape[1])
        cluster_of = np.zeros_like(padded)  # flat cluster row each box joined
        active = (padded >= 0).sum(axis=0)
        for j in range(padded.shape[1]):
            rows = int(active[j])
            pos = padded[:rows, j]
            box, s = dets.xyxy_norm[pos], wscore[pos]
            matched, flat = cl.match(rows, box, iou_thr)
            joined = np.flatnonzero(matched)
            flat[~matched] = cl.new(np.flatnonzero(~matched), box, s)
            _wbf_join(cl, flat[joined], box[joined], s[joined])
            cluster_of[:rows, j] = flat
        g_idx, slot = cl.rows()
        flat = g_idx * cl.k + slot
        out_group.append(ids[g_idx])
        out_slot.append(slot)
        out_xyxy.append(cl.rep(flat))
        out_score.append(_wbf_scores(cl, flat, padded, cluster_of, dets.model, wscore, weights, conf_type,
                                     allows_overflow))
    group, slot = np.concatenate(out_group), np.concatenate(out_slot)
    first = _first_position(groups)
    return _by_score(groups.image[group], groups.label[group], np.concatenate(out_score),
                     np.concatenate(out_xyxy), (first[group], slot))


def _wbf_join(cl: _Clusters, flat, box, s):
    """Add boxes to their clusters (one per cluster) and recompute the fused box as
    ``get_weighted_box`` does: float32 sum of ``score * box``, divided by the float64 score sum."""
    cl.sum_xyxy[flat] += s[:, None] * box
    cl.conf[flat] += s
    cl.set_rep(flat, (cl.sum_xyxy[flat] / cl.conf[flat, None]).astype(np.float32).astype(np.float64))


def _wbf_scores(cl, flat, padded, cluster_of, model, wscore, weights, conf_type, allows_overflow):
    """Cluster scores as ``get_weighted_box`` leaves them (float32, except for clusters of one box)
    and as ``weighted_boxes_fusion`` rescales them at the end. Sums run over the boxes in the order
    they joined (``ufunc.at`` is sequential), so they round as ensemble_boxes' loops do."""
    real = padded >= 0
    joined_order = cluster_of.T[real.T]  # step-major: the order boxes joined in
    pos = padded.T[real.T]
    n = len(cl.conf)
    members = np.bincount(joined_order, minlength=n)[flat]
    weight = np.zeros(n)
    np.add.at(weight, joined_order, weights[model[pos]].astype(np.float64))
    max_conf = np.full(n, -np.inf)
    np.maximum.at(max_conf, joined_order, wscore[pos])
    models = np.zeros(n, dtype=np.int64)
    np.bitwise_or.at(models, joined_order, np.left_shift(1, model[pos]))
    single = members == 1
    conf = cl.conf[flat]
    score = np.where(single, conf, (max_conf[flat] if conf_type == "max" else conf / members).astype(np.float32))
    weight = np.where(single, weight[flat], weight[flat].astype(np.float32))
    return _wbf_rescale(score, members, weight, models[flat], weights, conf_type, allows_overflow)


def _wbf_rescale(s, n, w, models, weights, conf_type, allows_overflow) -> np.ndarray:
    """Scores after clustering, as at the end of ``weighted_boxes_fusion``: ``s`` fused score,
    ``n`` boxes, ``w`` weight sum, ``models`` bit mask of the models, per cluster."""
    if conf_type == "box_and_model_avg":
        s = s * n / w
        return s * _subset_sums(weights, models) / weights.sum()
    if conf_type == "absent_model_aware_avg":
        absent = (1 << len(weights)) - 1 - models
        return s * n / (w + _subset_sums(weights, absent))
    if conf_type == "max":
        return s / weights.max()
    if not allows_overflow:
        return s * np.minimum(len(weights), n) / weights.sum()
    return s * n / weights.sum()


def _subset_sums(weights: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``weights[models in mask].sum()`` per bit mask, summed by numpy as ensemble_boxes does."""
    uniq, inv = np.unique(masks, return_inverse=True)
    bits = np.arange(len(weights))
    sums = np.array([weights[(int(u) >> bits) & 1 == 1].astype(np.float64).sum() for u in uniq])
    return sums[inv]


def _first_position(groups: _Groups) -> np.ndarray:
    """Per group, the position of its first box in the input: ensemble_boxes keeps labels in the
    order it first meets them in an image."""
    return np.minimum.reduceat(groups.order, groups.start)


# ---------------------------------------------------------------------------------------------
# Non-maximum weighted


def _nmw(dets: Detections, weights: np.ndarray, iou_thr: float) -> Fused:
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    wscore = dets.score * weights[dets.model]
    groups = _group(dets.image, dets.label, wscore, _numpy_descending)
    out_group, out_slot, out_xyxy, out_score = [], [], [], []
    for ids, padded in groups.chunks(8):
        cl = _Clusters(len(ids), padded.shape[1])  # rep: the first (best-scoring) box of a cluster
        cluster_of = np.zeros_like(padded)
        active = (padded >= 0).sum(axis=0)
        for j in range(padded.shape[1]):
            rows = int(active[j])
            pos = padded[:rows, j]
            box, s = dets.xyxy_norm[pos], wscore[pos]
            matched, flat = cl.match(rows, box, iou_thr)
            flat[~matched] = cl.new(np.flatnonzero(~matched), box, s)
            cluster_of[:rows, j] = flat
        g_idx, slot = cl.rows()
        flat = g_idx * cl.k + slot
        out_group.append(ids[g_idx])
        out_slot.append(slot)
        out_xyxy.append(_nmw_boxes(cl, flat, padded, cluster_of, dets.xyxy_norm, wscore))
        out_score.append(cl.conf[flat].astype(np.float32).astype(np.float64))  # the first box's score
    group, slot = np.concatenate(out_group), np.concatenate(out_slot)
    first = _first_position(groups)
    return _by_score(groups.image[group], groups.label[group], np.concatenate(out_score),
                     np.concatenate(out_xyxy), (first[group], slot))


def _nmw_boxes(cl, flat, padded, cluster_of, xyxy_norm, wscore):
    """NMW's ``get_weighted_box``: every box of a cluster, the first too, adds
    ``score * IoU(box, first box) * box`` to a float32 sum, in the order the boxes joined."""
    real = padded >= 0
    joined = cluster_of.T[real.T]
    pos = padded.T[real.T]
    box = xyxy_norm[pos]
    weight = wscore[pos] * _iou_nmw(box, cl.rep(joined))
    sums = np.zeros((len(cl.conf), 4), dtype=np.float32)
    np.add.at(sums, joined, weight[:, None] * box)
    conf = np.zeros(len(cl.conf))
    np.add.at(conf, joined, weight)
    return (sums[flat] / conf[flat, None]).astype(np.float32).astype(np.float64)


def _iou_nmw(a, b):
    """Row-wise IoU ``[A]`` of ``a, b [A, 4]``, as ensemble_boxes' numba ``bb_intersection_over_union``."""
    inter = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0) * \
        np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter == 0, 0.0, inter / (area_a + area_b - inter))


# ---------------------------------------------------------------------------------------------
# NMS and soft-NMS


def _nms(dets: Detections, weights, iou_thr: float, soft: bool, soft_method: int, sigma: float, thresh: float) -> Fused:
    if weights is not None:
        w = np.array(weights)
        dets = Detections(dets.image, dets.label, (dets.score * w[dets.model]) / w.sum(), dets.xyxy_norm, dets.model)
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    if soft:
        groups = _group(dets.image, dets.label)
        keep_positions = _soft_nms_keep(dets, groups, iou_thr, soft_method, sigma, thresh)
    else:
        groups = _group(dets.image, dets.label, dets.score, _numba_descending)
        keep_positions = _nms_keep(dets, groups, iou_thr)
    return Fused(dets.image[keep_positions], dets.label[keep_positions], dets.score[keep_positions],
                 dets.xyxy_norm[keep_positions])


def _nms_keep(dets: Detections, groups: _Groups, iou_thr: float) -> np.ndarray:
    """Greedy NMS per group (``nms_float_fast``): positions kept, by image, label, then score."""
    kept = []
    for ids, padded in groups.chunks():
        g, n = padded.shape
        boxes = dets.xyxy_norm[np.maximum(padded, 0)]
        suppressed = padded < 0
        keep = np.zeros((g, n), dtype=bool)
        for j in range(n):
            rows = np.flatnonzero(~suppressed[:, j])
            if not len(rows):
                continue
            keep[rows, j] = True
            iou = _iou_one_to_many(boxes[rows, j], boxes[rows, j + 1:])
            suppressed[rows, j + 1:] |= ~(iou <= iou_thr)
        kept.append(_kept_in_group_order(ids, padded, keep))
    return _order_by_group(groups, kept)


def _soft_nms_keep(dets, groups: _Groups, iou_thr, method, sigma, thresh) -> np.ndarray:
    """``cpu_soft_nms_float`` per group: walk the boxes, each time swapping the best remaining
    one into place and decaying the scores of the rest by their IoU with it."""
    kept = []
    for ids, padded in groups.chunks():
        g, n = padded.shape
        idx = padded.copy()
        boxes = np.where((idx >= 0)[..., None], dets.xyxy_norm[np.maximum(idx, 0)], 0.0)  # padding: IoU 0
        scores = np.where(idx >= 0, dets.score[np.maximum(idx, 0)], -np.inf)
        areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        active = (idx >= 0).sum(axis=0)
        for i in range(n - 1):
            rows = int(active[i])
            r = np.arange(rows)
            best = i + 1 + scores[:rows, i + 1:].argmax(axis=1)
            swap = np.flatnonzero(scores[r, i] < scores[r, best])
            for arr in (idx, scores, areas, boxes):
                a, b = arr[swap, i].copy(), arr[swap, best[swap]].copy()
                arr[swap, i], arr[swap, best[swap]] = b, a
            iou = _iou_soft(boxes[:rows, i], areas[:rows, i], boxes[:rows, i + 1:], areas[:rows, i + 1:])
            if method == 1:
                weight = np.where(iou > iou_thr, 1 - iou, 1.0)
            else:
                weight = np.exp(-(iou * iou) / sigma)
            scores[:rows, i + 1:] = weight * scores[:rows, i + 1:]
        keep = (idx >= 0) & (scores > thresh)
        kept.append(_kept_in_group_order(ids, idx, keep))
    return _order_by_group(groups, kept)


def _iou_soft(box, area, boxes, areas):
    """IoU as ``cpu_soft_nms_float`` computes it: ``[A, 4]`` against ``[A, K, 4]``."""
    dy = np.maximum(0.0, np.minimum(box[:, None, 3], boxes[..., 3]) - np.maximum(box[:, None, 1], boxes[..., 1]))
    dx = np.maximum(0.0, np.minimum(box[:, None, 2], boxes[..., 2]) - np.maximum(box[:, None, 0], boxes[..., 0]))
    inter = dy * dx
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area[:, None] + areas - inter)


def _kept_in_group_order(ids, padded, keep):
    g_idx, col = np.nonzero(keep)
    return ids[g_idx], col, padded[g_idx, col]


def _order_by_group(groups: _Groups, kept) -> np.ndarray:
    """Kept positions ordered by image, label (ascending, as ``np.unique``), then processing order."""
    gid = np.concatenate([k[0] for k in kept])
    col = np.concatenate([k[1] for k in kept])
    pos = np.concatenate([k[2] for k in kept])
    return pos[np.lexsort((col, groups.label[gid], groups.image[gid]))]


# ---------------------------------------------------------------------------------------------
# Output order


def _by_score(image, label, score, xyxy, pre_order) -> Fused:
    """Sort each image's boxes by descending score as ``overall_boxes[:, 1].argsort()[::-1]``.

    ``pre_order`` (keys, most significant first) is the order ensemble_boxes builds
    ``overall_boxes`` in; it only matters for equal scores, where numpy's sort decides."""
    pre = np.lexsort(tuple(reversed((image, *pre_order))))
    image, label, score, xyxy = image[pre], label[pre], score[pre], xyxy[pre]
    order = np.lexsort((-score, image))
    s, im = score[order], image[order]
    tied_images = np.unique(im[1:][(s[1:] == s[:-1]) & (im[1:] == im[:-1])])
    for t in tied_images:
        where = np.flatnonzero(im == t)
        members = np.sort(order[where])  # this image's boxes in pre-order
        order[where] = members[np.argsort(score[members])[::-1]]
    return Fused(image[order], label[order], score[order], xyxy[order])


def _empty() -> Fused:
    return Fused(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, 4)))


# ---------------------------------------------------------------------------------------------
# COCO results in, COCO results out (absolute pixels)


def to_detections(members: list[list[dict]], image_index: dict, sizes: np.ndarray) -> Detections:
    """Flat detections of several COCO results lists (one per model), normalised as a user of
    ensemble_boxes does it: ``[x / W, y / H, (x + w) / W, (y + h) / H]``.

    Args:
        members: COCO results per model (``bbox`` xywh_abs); every ``image_id`` in ``image_index``.
        image_index: ``{image id: row of sizes}``.
        sizes: ``[I, 2]`` float64, ``(width, height)`` of each image.
    """
    parts = []
    for m, preds in enumerate(members):
        n = len(preds)
        try:
            image = np.fromiter(map(image_index.__getitem__, map(itemgetter("image_id"), preds)), dtype=np.int64, count=n)
        except KeyError as e:
            raise SmallboxError(f"predictions of model {m}: unknown image id {e.args[0]!r}") from None
        xywh = np.fromiter(chain.from_iterable(map(itemgetter("bbox"), preds)), dtype=np.float64, count=4 * n).reshape(n, 4)
        wh = sizes[image]
        xyxy_norm = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) / np.tile(wh, 2)
        label = np.fromiter(map(itemgetter("category_id"), preds), dtype=np.int64, count=n)
        score = np.fromiter(map(itemgetter("score"), preds), dtype=np.float64, count=n)
        parts.append(Detections(image, label, score, xyxy_norm, np.full(n, m, dtype=np.int64)))
    return Detections(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                        ("image", "label", "score", "xyxy_norm", "model")))


def to_coco(fused: Fused, image_ids: list, sizes: np.ndarray) -> list[dict]:
    """COCO results of fused detections: corners multiplied back by the image size (labels are
    category ids already)."""
    xyxy_abs = fused.xyxy_norm * np.tile(sizes[fused.image], 2)
    ids = [image_ids[i] for i in fused.image.tolist()]
    return to_coco_results(xyxy_abs, fused.score, fused.label, ids)


def gate(preds: list[dict], area_range) -> list[dict]:
    """Only the boxes whose area ``w * h`` (original px²) lies in ``[lo, hi)`` (``SizeBuckets``'
    convention); ``area_range`` None keeps all."""
    if area_range is None:
        return preds
    lo, hi = area_range
    return [p for p in preds if lo <= p["bbox"][2] * p["bbox"][3] < hi]


def ensemble_predictions(members: list[list[dict]], images: list[dict], method: str = "wbf",
                         gates: list | None = None, **options) -> list[dict]:
    """Fuse COCO results of several models image by image (absolute pixels in and out).

    Args:
        members: one validated COCO results list per model (original ids).
        images: COCO ``images`` entries (``id``, ``width``, ``height``) of the images predicted on.
        method: ``wbf``, ``nms``, ``soft-nms`` or ``nmw``.
        gates: per model, an area range ``(lo, hi)`` in px² it may contribute boxes in, or None.
        options: the keyword arguments of :func:`fuse` (weights, iou_thr, skip_box_thr, ...).
    Returns:
        list[dict]: COCO results, images in the order of ``images``, each image's boxes in
        ensemble_boxes' order.
    """
    if gates is not None:
        members = [gate(p, g) for p, g in zip(members, gates)]
    image_ids = [im["id"] for im in images]
    image_index = {i: k for k, i in enumerate(image_ids)}
    sizes = np.array([[im["width"], im["height"]] for im in images], dtype=np.float64).reshape(-1, 2)
    fused = fuse(to_detections(members, image_index, sizes), len(members), method, **options)
    return to_coco(fused, image_ids, sizes)
