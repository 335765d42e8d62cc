"""Box fusion of several models' detections: WBF, NMS, soft-NMS and NMW, with the results of
`ensemble_boxes <https://github.com/ZFTurbo/Weighted-Boxes-Fusion>`_ (1.0.9) — same boxes,
scores, labels and order — for all images and classes in one call.

Why not call ensemble_boxes: it runs a Python loop per box and per image (about 2.7 s of CPU for
4 models x 500 DeepPCB images). Here the clustering and suppression loops are compiled by numba
and run over every group (image, label) in one call, in ensemble_boxes' arithmetic: the same
operations in the same order (the IoU of :mod:`.overlap`), float32 where it uses float32. The
loops stay sequential, as in ensemble_boxes, because their results depend on the order in which
boxes join clusters.

numba compiles each kernel on its first call (about 3 s of CPU for all four methods) and caches
the machine code on disk (:func:`.overlap.njit_cached`), so later processes only load it (about
0.3 s).

Two things a compiled loop cannot reproduce are left to numpy:

- the order of equal scores: ensemble_boxes sorts with numpy's ``argsort`` (NMS: numba's
  quicksort), whose order of equal keys depends on the algorithm; groups and images holding equal
  scores are re-sorted with that very sort (``_resort``);
- soft-NMS's gaussian decay ``exp(-IoU² / sigma)``: numpy's ``exp`` (its own SIMD code on most
  CPUs) and numba's (the C library's) may differ in the last bit, and that bit can decide whether
  a decayed score stays above ``thresh``. The compiled walk hands numpy each step's exponents.

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

import gc
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np
from numba.misc.quicksort import make_py_quicksort

from ..errors import SmallboxError
from ..predictions.results import to_coco_results
from .overlap import iou_rows, njit_cached

METHODS = ("wbf", "nms", "soft-nms", "nmw")
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
DEFAULT_IOU = {"wbf": 0.55, "nms": 0.5, "soft-nms": 0.5, "nmw": 0.55}
SOFT_METHODS = {"linear": 1, "gaussian": 2}


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
    if soft_method not in SOFT_METHODS:
        raise SmallboxError(f"soft-NMS method must be one of {', '.join(SOFT_METHODS)}, got {soft_method!r}")
    if weights is not None and len(weights) != n_models:
        raise SmallboxError(f"got {len(weights)} weights for {n_models} prediction files")
    if method == "wbf" and conf_type in ("box_and_model_avg", "absent_model_aware_avg") and n_models > 63:
        # these need each cluster's set of models, kept as the bits of an int64
        raise SmallboxError(f"conf-type {conf_type} takes at most 63 prediction files, got {n_models}")
    iou_thr = DEFAULT_IOU[method] if iou_thr is None else float(iou_thr)
    if not 0 <= iou_thr <= 1:
        raise SmallboxError(f"IoU threshold must be in [0, 1], got {iou_thr}")
    if skip_box_thr > 0:
        dets = dets.take(np.flatnonzero(~(dets.score < skip_box_thr)))
    if method in ("wbf", "nmw"):
        w = np.ones(n_models) if weights is None else np.array(weights)
        if method == "wbf":
            return _wbf(dets, w, iou_thr, conf_type, allows_overflow)
        return _nmw(dets, w / max(w), iou_thr)
    if weights is not None:
        w = np.array(weights)
        dets = Detections(dets.image, dets.label, (dets.score * w[dets.model]) / w.sum(), dets.xyxy_norm, dets.model)
    if method == "nms":
        return _nms(dets, iou_thr)
    return _soft_nms(dets, iou_thr, soft_method == "linear", float(sigma), float(thresh))


# ---------------------------------------------------------------------------------------------
# Input cleaning and grouping


def _clean_boxes(dets: Detections) -> Detections:
    """Corners ordered, coordinates clipped to [0, 1], zero-area boxes dropped (ensemble_boxes'
    ``prefilter_boxes`` / ``prepare_boxes``); the order of the rest is kept. The arrays come out
    in the dtypes the kernels are compiled for (int64, contiguous float64)."""
    b = np.asarray(dets.xyxy_norm, dtype=np.float64)
    b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], axis=1)
    np.clip(b, 0.0, 1.0, out=b)
    nonzero = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) != 0.0
    if not nonzero.all():
        dets, b = dets.take(np.flatnonzero(nonzero)), b[nonzero]
    image, label, model = (np.asarray(a, dtype=np.int64) for a in (dets.image, dets.label, dets.model))
    return Detections(image, label, np.ascontiguousarray(dets.score, dtype=np.float64), b, model)


@dataclass
class _Groups:
    """Detections grouped per (image, label): group ``g`` is ``order[start[g]:start[g] + size[g]]``
    (detection positions), of image ``image[g]`` and label ``label[g]``."""

    order: np.ndarray
    start: np.ndarray
    size: np.ndarray
    image: np.ndarray
    label: np.ndarray


def _group_by_key(image, label, by_first=False) -> _Groups:
    """Positions ``0..N-1`` grouped by (image, label), input order kept within a group; groups by
    image, then label ascending (NMS's ``np.unique`` order) or, ``by_first``, by the position of
    their first box (WBF and NMW keep labels in the order they first meet them in an image)."""
    lo, hi = int(label.min()), int(label.max())
    if hi - lo <= 4 * len(label):  # class ids: a short range, no need to sort the labels
        labels, rank = np.arange(lo, hi + 1), label - lo
    else:
        labels, rank = np.unique(label, return_inverse=True)
    key = image * len(labels) + rank
    order = np.argsort(key, kind="stable")  # timsort: fast on runs (files come sorted by image)
    sorted_key = key[order]
    start = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    size = np.diff(np.append(start, len(order)))
    group_key = sorted_key[start]
    if by_first:
        by = np.lexsort((order[start], group_key // len(labels)))
        start, size, group_key = start[by], size[by], group_key[by]
    return _Groups(order, start, size, group_key // len(labels), labels[group_key % len(labels)])


def _sort_groups(groups: _Groups, score, tie_order) -> _Groups:
    """Each group's boxes by descending score, in place; groups holding equal scores are ordered
    by ``tie_order``, the sort of the library being matched."""
    tied = _k_sort_desc(score, groups.order, groups.start, groups.size)
    _resort(groups.order, groups.start, groups.size, score, tie_order, np.flatnonzero(tied))
    return groups


def _resort(order, start, size, values, tie_order, segments):
    """Order the given segments ``order[start[g]:start[g] + size[g]]`` with ``tie_order(values in
    ascending index order) -> permutation``: for boxes, input order; for clusters,
    ``overall_boxes`` order; the order ensemble_boxes hands them to its sort in."""
    for g in segments:
        sl = slice(start[g], start[g] + size[g])
        members = np.sort(order[sl])
        order[sl] = members[tie_order(values[members])]


def _numpy_descending(scores):
    """ensemble_boxes' ``scores.argsort()[::-1]`` in numpy."""
    return np.argsort(scores)[::-1]


def _numpy_descending_float32(scores):
    """The same on float32 (NMW's ``overall_boxes``): numpy's order of equal keys may differ by dtype."""
    return np.argsort(scores.astype(np.float32))[::-1]


def _numba_descending(scores):
    """ensemble_boxes' ``scores.argsort()[::-1]`` inside numba (NMS's ``nms_float_fast``): numba's
    quicksort, here in its pure-Python form (compiling numba's argsort takes seconds)."""
    return np.asarray(_NUMBA_ARGSORT(np.asarray(scores, dtype=np.float64)))[::-1]


_NUMBA_ARGSORT = make_py_quicksort(is_argsort=True, is_np_array=True).run_quicksort


# ---------------------------------------------------------------------------------------------
# Weighted boxes fusion


def _wbf(dets: Detections, weights: np.ndarray, iou_thr: float, conf_type: str, allows_overflow: bool) -> Fused:
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    w = weights[dets.model].astype(np.float64)
    wscore = dets.score * w  # ensemble_boxes' row: [label, score * weight, weight, model, box]
    groups = _sort_groups(_group_by_key(dets.image, dets.label, by_first=True), wscore, _numpy_descending)
    group, xyxy, conf, count, wsum, smax, models = _k_wbf(groups.order, groups.start, groups.size, dets.xyxy_norm,
                                                          wscore, w, dets.model, iou_thr)
    score = _wbf_score(conf, count, wsum, smax, models, weights, conf_type, allows_overflow)
    return _by_score(groups.image[group], groups.label[group], score, xyxy, _numpy_descending)


def _wbf_score(conf, members, weight, max_conf, models, weights, conf_type, allows_overflow):
    """Cluster scores ``[C]`` as ``get_weighted_box`` leaves them (float32, except for clusters of
    one box, which keep the box's row) and as ``weighted_boxes_fusion`` rescales them at the end.

    Args (per cluster): ``conf`` score sum, ``members`` boxes, ``weight`` weight sum, ``max_conf``
    best score, ``models`` bit mask of the models.
    """
    single = members == 1
    score = np.where(single, conf, (max_conf if conf_type == "max" else conf / members).astype(np.float32))
    w = np.where(single, weight, weight.astype(np.float32))
    if conf_type == "box_and_model_avg":
        score = score * members / w
        return score * _subset_sums(weights, models) / weights.sum()
    if conf_type == "absent_model_aware_avg":
        absent = (1 << len(weights)) - 1 - models
        return score * members / (w + _subset_sums(weights, absent))
    if conf_type == "max":
        return score / weights.max()
    if not allows_overflow:
        return score * np.minimum(len(weights), members) / weights.sum()
    return score * members / weights.sum()


def _subset_sums(weights: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``weights[models in mask].sum()`` per bit mask, summed by numpy as ensemble_boxes does."""
    uniq, inv = np.unique(masks, return_inverse=True)
    bits = np.arange(len(weights))
    sums = np.array([weights[(int(u) >> bits) & 1 == 1].astype(np.float64).sum() for u in uniq])
    return sums[inv]


@njit_cached
def _k_wbf(order, start, size, box, s, w, model, iou_thr):
    """WBF clustering of each group (boxes by descending score), as ``weighted_boxes_fusion``'s
    loop: the first best cluster by IoU (> ``iou_thr``) with its fused box takes the box, else the
    box opens a cluster.

    Args: ``box [N, 4]``, ``s [N]`` score * weight, ``w [N]`` weight, ``model [N]``.
    Returns, per cluster in creation order (``[C]``): group, fused box ``[C, 4]`` (the box itself
    for one box, else float32 as ``get_weighted_box``), score sum, boxes, weight sum, max score,
    bit mask of the models.
    """
    n = len(order)
    group, count, models = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    rep = np.empty((n, 4))
    acc = np.empty((n, 4), np.float32)  # get_weighted_box's float32 sum of score * box
    conf, wsum, smax = np.empty(n), np.empty(n), np.empty(n)
    c = 0
    for g in range(len(start)):
        first = c
        for p in order[start[g]:start[g] + size[g]]:
            best, best_iou = -1, iou_thr
            for k in range(first, c):  # find_matching_box_fast: the first best, one cluster at a time
                iou = iou_rows(rep, k, box, p)
                if iou > best_iou:
                    best, best_iou = k, iou
            if best < 0:
                k = c
                c += 1
                group[k], count[k], models[k] = g, 1, 1 << model[p]
                conf[k], wsum[k], smax[k] = s[p], w[p], s[p]
                for j in range(4):  # vstack keeps the box as it is (float64)
                    rep[k, j] = box[p, j]
                    acc[k, j] = np.float32(0.0 + s[p] * box[p, j])
                continue
            k = best
            conf[k] += s[p]
            for j in range(4):  # float32 += float64, then float32 / float64 sum, as numpy does it
                acc[k, j] = np.float32(np.float64(acc[k, j]) + s[p] * box[p, j])
                rep[k, j] = np.float64(np.float32(np.float64(acc[k, j]) / conf[k]))
            count[k] += 1
            wsum[k] += w[p]
            smax[k] = max(smax[k], s[p])
            models[k] |= 1 << model[p]
    return group[:c], rep[:c], conf[:c], count[:c], wsum[:c], smax[:c], models[:c]


# ---------------------------------------------------------------------------------------------
# Non-maximum weighted


def _nmw(dets: Detections, weights: np.ndarray, iou_thr: float) -> Fused:
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    wscore = dets.score * weights[dets.model]
    groups = _sort_groups(_group_by_key(dets.image, dets.label, by_first=True), wscore, _numpy_descending)
    group, lead, xyxy = _k_nmw(groups.order, groups.start, groups.size, dets.xyxy_norm, wscore, iou_thr)
    # NMW's overall_boxes is float32: scores rounded, and sorted as float32.
    score = wscore[lead].astype(np.float32).astype(np.float64)
    return _by_score(groups.image[group], groups.label[group], score, xyxy.astype(np.float64),
                     _numpy_descending_float32)


@njit_cached
def _k_nmw(order, start, size, box, s, iou_thr):
    """NMW of each group (boxes by descending score), as ``non_maximum_weighted``: a box joins the
    first cluster whose first box it overlaps best (IoU > ``iou_thr``); a cluster's box is the
    float32 sum of ``score * IoU(box, first box) * box``, divided by the float64 sum of the weights.

    Returns per cluster in creation order: group ``[C]``, first box's position ``[C]``, fused box
    ``[C, 4]`` float32.
    """
    n = len(order)
    group, lead = np.empty(n, np.int64), np.empty(n, np.int64)
    acc = np.empty((n, 4), np.float32)
    conf = np.empty(n)
    c = 0
    for g in range(len(start)):
        first = c
        for p in order[start[g]:start[g] + size[g]]:
            best, best_iou = -1, iou_thr
            for k in range(first, c):
                iou = iou_rows(box, lead[k], box, p)
                if iou > best_iou:
                    best, best_iou = k, iou
            if best < 0:
                # IoU of a box with itself: area / (area + area - area), exactly 1 (no zero-area boxes here)
                best, best_iou = c, 1.0
                group[c], lead[c], conf[c] = g, p, 0.0
                acc[c, :] = 0.0
                c += 1
            weight = s[p] * best_iou  # IoU is symmetric: the IoU(box, first box) get_weighted_box takes
            conf[best] += weight
            for j in range(4):
                acc[best, j] = np.float32(np.float64(acc[best, j]) + weight * box[p, j])
    out = np.empty((c, 4), np.float32)
    for k in range(c):
        for j in range(4):
            out[k, j] = np.float32(np.float64(acc[k, j]) / conf[k])
    return group[:c], lead[:c], out


# ---------------------------------------------------------------------------------------------
# NMS and soft-NMS


def _nms(dets: Detections, iou_thr: float) -> Fused:
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    groups = _sort_groups(_group_by_key(dets.image, dets.label), dets.score, _numba_descending)
    return _kept(dets, _k_nms(groups.order, groups.start, groups.size, dets.xyxy_norm, iou_thr))


@njit_cached
def _k_nms(order, start, size, box, iou_thr):
    """Greedy NMS of each group (boxes by descending score), as ``nms_float_fast``: a box is kept
    unless a kept box overlaps it by IoU > ``iou_thr``. Returns the kept positions ``[K]``, group
    after group, each group's by descending score."""
    keep = np.empty(len(order), np.int64)
    gone = np.zeros(len(order), np.bool_)
    n_keep = 0
    for g in range(len(start)):
        end = start[g] + size[g]
        for i in range(start[g], end):
            if gone[i]:
                continue
            keep[n_keep] = order[i]
            n_keep += 1
            for j in range(i + 1, end):
                if not gone[j] and iou_rows(box, order[i], box, order[j]) > iou_thr:
                    gone[j] = True
    return keep[:n_keep]


def _soft_nms(dets: Detections, iou_thr: float, linear: bool, sigma: float, thresh: float) -> Fused:
    """``cpu_soft_nms_float`` in every group, all groups one step at a time: at step ``i`` each
    group swaps its best remaining box into column ``i`` and the kernel writes the decay of every
    later box (its exponent, for the gaussian); numpy exponentiates them between two steps, on a
    fresh array, as ensemble_boxes calls it. The Python loop runs as many times as the largest
    group has boxes; memory stays ``O(N)`` whatever the size of a group (no matrix of pairs)."""
    dets = _clean_boxes(dets)
    if not len(dets):
        return _empty()
    groups = _group_by_key(dets.image, dets.label)
    walk = groups.order.copy()  # each group's positions, in walk order as the walk goes
    s = dets.score[walk]  # and their decayed scores
    by_size = np.argsort(-groups.size, kind="stable")
    row = np.empty(len(walk))
    weight = row[:0]
    for i in range(int(groups.size.max())):
        m = _k_soft_nms_step(i, by_size, groups.start, groups.size, walk, s, dets.xyxy_norm, weight, row,
                             linear, iou_thr, sigma)
        weight = row[:m].copy() if linear else np.exp(row[:m])  # numpy's exp: numba's may differ in the last bit
    return _kept(dets, walk[s > thresh])  # groups lie by image, then label: ensemble_boxes' order


@njit_cached
def _k_soft_nms_step(i, by_size, start, size, walk, s, box, weight, row, linear, iou_thr, sigma):
    """Step ``i`` of ``cpu_soft_nms_float`` in every group still running (``size > i``; ``by_size``
    lists the groups by descending size). Group ``g``'s state is ``walk`` (positions) and ``s``
    (decayed scores) from ``start[g]``, in walk order.

    1. Step ``i - 1``'s decay: the scores after column ``i - 1`` times ``weight``, which holds,
       running group after running group, the values this kernel wrote into ``row`` last step.
    2. The best remaining box (the first maximum after column ``i``) swaps into column ``i`` if
       its score beats the box there.
    3. Into ``row``, for every later box: linear: ``1 - IoU`` above ``iou_thr``, else 1;
       gaussian: the exponent ``-IoU² / sigma``.

    Returns how many values of ``row`` were written.
    """
    r = o = 0
    for g in by_size:
        if size[g] <= i:
            break
        lead, end = start[g] + i, start[g] + size[g]
        best = lead + 1
        for j in range(lead, end):
            if i > 0:
                s[j] = weight[r] * s[j]
                r += 1
            if j > best and s[j] > s[best]:
                best = j
        if best < end and s[lead] < s[best]:
            walk[lead], walk[best] = walk[best], walk[lead]
            s[lead], s[best] = s[best], s[lead]
        for j in range(lead + 1, end):
            iou = iou_rows(box, walk[lead], box, walk[j])
            if linear:
                row[o] = 1.0 - iou if iou > iou_thr else 1.0
            else:
                row[o] = -(iou * iou) / sigma
            o += 1
    return o


def _kept(dets: Detections, positions: np.ndarray) -> Fused:
    return Fused(dets.image[positions], dets.label[positions], dets.score[positions], dets.xyxy_norm[positions])


# ---------------------------------------------------------------------------------------------
# Sorting and output order


def _by_score(image, label, score, xyxy, tie_order) -> Fused:
    """Clusters in ``overall_boxes`` order (images ascending), each image's sorted by descending
    score as ``overall_boxes[:, 1].argsort()[::-1]``; images holding equal scores by ``tie_order``."""
    order = np.arange(len(score))
    start = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    size = np.diff(np.append(start, len(order)))
    tied = _k_sort_desc(score, order, start, size)
    _resort(order, start, size, score, tie_order, np.flatnonzero(tied))
    return Fused(image[order], label[order], score[order], xyxy[order])


@njit_cached
def _k_sort_desc(values, order, start, size):
    """Sort each segment ``order[start[g]:start[g] + size[g]]`` (indices into ``values``) by
    descending value, in place, stably (insertion-sorted runs of 16, then merged: numba's own
    argsort takes seconds to compile). Returns ``[G]`` bool: the segment holds equal values (or
    NaN), whose order is then left to ``_resort``."""
    tied = np.zeros(len(start), dtype=np.bool_)
    src, dst = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    for g in range(len(start)):
        n, first = size[g], start[g]
        if n < 2:
            continue
        for i in range(n):  # explicit loops here and below: slice assignments compile slowly
            src[i] = order[first + i]
        for lo in range(0, n, 16):
            for i in range(lo + 1, min(lo + 16, n)):
                p, j = src[i], i
                while j > lo and values[src[j - 1]] < values[p]:
                    src[j] = src[j - 1]
                    j -= 1
                src[j] = p
        width = 16
        while width < n:
            for lo in range(0, n, 2 * width):
                mid, hi = min(lo + width, n), min(lo + 2 * width, n)
                i, j = lo, mid
                for k in range(lo, hi):
                    if i < mid and (j >= hi or not values[src[j]] > values[src[i]]):
                        dst[k] = src[i]
                        i += 1
                    else:
                        dst[k] = src[j]
                        j += 1
            src, dst = dst, src
            width *= 2
        for i in range(n):
            order[first + i] = src[i]
        for i in range(n - 1):
            if not values[src[i]] > values[src[i + 1]]:
                tied[g] = True
                break
    return tied


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
    with _gc_paused():
        ids = [image_ids[i] for i in fused.image.tolist()]
        return to_coco_results(xyxy_abs, fused.score, fused.label, ids)


@contextmanager
def _gc_paused():
    """No cyclic garbage collection while building many small acyclic objects (the output's
    dicts and lists): a collection finds nothing to free there, yet one that reaches the oldest
    generation walks every live object (the input's dicts too) and can cost more than building
    the output. The counts carry on, so the collector runs as usual afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
