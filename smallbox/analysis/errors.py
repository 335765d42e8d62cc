"""Why boxes are missed: TIDE's error decomposition (Bolya et al., "TIDE: A General Toolbox for
Identifying Object Detection Errors", ECCV 2020), overall and per size range.

Every false positive at IoU 0.5 gets one type, checked in this order (TIDE's): background
(no ground truth in the image), localisation (right class, 0.1 <= IoU <= 0.5 with a box),
classification (another class's box at IoU >= 0.5), duplicate (a box of its class already taken
at IoU >= 0.5), background (IoU <= 0.1 with every box), both (classification and localisation);
a ground-truth box no detection explains is missed. Each type's ΔAP50 is the AP50 gained by
fixing all its errors and nothing else (fixing a classification or localisation error turns the
best such detection of a box into a true positive; a duplicate, background or both error is
removed; a missed box leaves the ground truth), in AP points (0-100) as TIDE prints them. The
special ΔAPs: FalsePos (every true positive scored above every false positive), FalseNeg (every
missed box removed from the ground truth).

Why by hand: ``tidecv`` (the reference; the overall numbers equal it, tests/test_errors.py) has
no size ranges, runs the decomposition in Python objects per detection, and needs a segmentation
per box. Here the matching runs once per image in a compiled loop (numba) on flat arrays, and
the APs of all fixes are array sorts. Each range's decomposition is TIDE's on that range's share
of the data, as COCO's area ranges define it: ground truth outside the range becomes an ignore
region (a detection half inside one is neither right nor wrong), and a detection outside the
range counts only where it overlaps a box of the range (IoU >= 0.1), so a small object's error
stays a small object's error even when its box came out larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..datasets.buckets import SizeBuckets
from ..datasets.coco import CocoDataset

MAIN_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_ERRORS = ("FalsePos", "FalseNeg")
POS_THRESH, BG_THRESH = 0.5, 0.1
RECALL_POINTS = np.array([x / 100 for x in range(101)])
# detection states and error codes of the kernel
TP, FP, IGNORED, OUT = 1, 0, -1, -2
NONE, CLS, LOC, BOTH, DUPE, BKG = 0, 1, 2, 3, 4, 5
KIND = {CLS: "Cls", LOC: "Loc", BOTH: "Both", DUPE: "Dupe", BKG: "Bkg"}


@dataclass
class Flat:
    """Ground truth and detections as flat arrays, detections of an image in TIDE's order (score
    descending, ties in file order), images in the ground truth's order."""

    g_start: np.ndarray   # [I + 1]
    g_box: np.ndarray     # [G, 4] xywh
    g_cls: np.ndarray     # [G]
    g_crowd: np.ndarray   # [G] bool
    g_area: np.ndarray    # [G] the evaluator's area (json area, else w*h)
    d_start: np.ndarray   # [I + 1]
    d_box: np.ndarray     # [D, 4]
    d_cls: np.ndarray
    d_score: np.ndarray


def flatten(gt, preds: list[dict]) -> Flat:
    data = gt.data if isinstance(gt, CocoDataset) else gt
    order = {im["id"]: k for k, im in enumerate(data["images"])}
    anns = sorted((a for a in data["annotations"] if a["image_id"] in order), key=lambda a: order[a["image_id"]])
    dets = [p for p in preds if p["image_id"] in order]
    keys = np.array([order[p["image_id"]] for p in dets], dtype=np.int64)
    scores = np.array([p["score"] for p in dets], dtype=np.float64)
    sorted_idx = np.lexsort((np.arange(len(dets)), -scores, keys)) if len(dets) else np.zeros(0, np.int64)
    n = len(order)
    g_img = np.array([order[a["image_id"]] for a in anns], dtype=np.int64)
    return Flat(np.searchsorted(g_img, np.arange(n + 1)),
                np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
                np.array([a["category_id"] for a in anns], dtype=np.int64),
                np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=np.bool_),
                np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=np.float64),
                np.searchsorted(keys[sorted_idx], np.arange(n + 1)),
                np.array([dets[i]["bbox"] for i in sorted_idx], dtype=np.float64).reshape(-1, 4),
                np.array([dets[i]["category_id"] for i in sorted_idx], dtype=np.int64),
                scores[sorted_idx])


def error_profile(gt, preds: list[dict], area_range=None, max_dets: int = 100, flat: Flat | None = None) -> dict:
    """TIDE's ΔAP50 of each error type (and FalsePos / FalseNeg) for the boxes of ``area_range``
    (``(lo, hi)`` in px², closed as in COCO; None: all), plus AP50, the count of each type and
    the number of ground-truth boxes counted."""
    f = flat or flatten(gt, preds)
    lo, hi = (-1.0, np.inf) if area_range is None else (float(area_range[0]), float(area_range[1]))
    state, kind, fix_cls, g_counted, g_used, g_missed = _match(
        f.g_start, f.g_box, f.g_cls, f.g_crowd, f.g_area, f.d_start, f.d_box, f.d_cls, f.d_score,
        lo, hi, area_range is not None, max_dets, POS_THRESH, BG_THRESH)
    positives = _counts(f.g_cls[g_counted])
    pos = np.arange(len(state))
    scored = state >= FP
    ap = _map(f.d_cls[scored], f.d_score[scored], state[scored] == TP, pos[scored], positives)
    errors = kind != NONE
    original = errors & (state == FP)  # an ignored detection's error has no original point
    correct = state == TP
    # TIDE rebuilds a run as: every error's point (in error order), then the true positives
    base_e = (f.d_cls[original], f.d_score[original], np.zeros(original.sum(), bool), pos[original])
    base_c = (f.d_cls[correct], f.d_score[correct], np.ones(correct.sum(), bool), pos[correct] + len(pos))
    out = {"AP50": ap, "gt_boxes": int(g_counted.sum())}
    for code, name in KIND.items():
        mine = kind == code
        keep = original & ~mine
        fixed = mine & (fix_cls >= 0)
        points = _concat((f.d_cls[keep], f.d_score[keep], np.zeros(keep.sum(), bool), pos[keep]),
                         (fix_cls[fixed], f.d_score[fixed], np.ones(fixed.sum(), bool), pos[fixed]), base_c)
        out[name] = max(_map(*points, positives) - ap, 0.0)
    missed = _counts(f.g_cls[g_missed])
    out["Miss"] = max(_map(*_concat(base_e, base_c), {c: n - missed.get(c, 0) for c, n in positives.items()}) - ap, 0.0)
    everything = _concat(base_e, base_c)
    out["FalsePos"] = _map(everything[0], everything[2].astype(np.float64), everything[2], everything[3], positives) - ap
    false_neg = _counts(f.g_cls[g_counted & ~g_used])
    out["FalseNeg"] = _map(*everything, {c: n - false_neg.get(c, 0) for c, n in positives.items()}) - ap
    out["counts"] = {KIND[c]: int((kind == c).sum()) for c in KIND}
    out["counts"]["Miss"] = int(g_missed.sum())
    return {k: out[k] for k in ("AP50", *MAIN_ERRORS, *SPECIAL_ERRORS, "counts", "gt_boxes")}


def error_profiles(gt, preds: list[dict], buckets: SizeBuckets, max_dets: int = 100) -> dict:
    """``{"overall": profile, "by_size": {range name: profile}}`` (:func:`error_profile`)."""
    flat = flatten(gt, preds)
    return {"overall": error_profile(gt, preds, None, max_dets, flat),
            "by_size": {name: error_profile(gt, preds, (lo, hi), max_dets, flat) for name, lo, hi in buckets.ranges()}}


def _concat(*parts):
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


def _counts(classes: np.ndarray) -> dict:
    values, counts = np.unique(classes, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts)}


def _map(cls, score, correct, key, positives: dict) -> float:
    """TIDE's mAP (0-100): the mean over classes with a data point or a ground truth box of the
    101-point interpolated AP (0 for a class without ground truth). Points sort by descending
    score, ties by ``key`` (TIDE's insertion order: its sort is stable)."""
    classes = sorted(set(np.unique(cls).tolist()) | {c for c, n in positives.items() if n > 0})
    if not classes:
        return 0.0
    order = np.lexsort((key, -score, cls))
    cls, correct = cls[order], correct[order]
    bounds = np.searchsorted(cls, classes + [np.iinfo(np.int64).max])
    aps = [_ap(correct[bounds[k]:bounds[k + 1]], positives.get(c, 0)) for k, c in enumerate(classes)]
    return float(np.mean(aps))


def _ap(correct: np.ndarray, n_positive: int) -> float:
    if n_positive <= 0 or not len(correct):
        return 0.0
    tp = np.cumsum(correct)
    precision = tp / np.arange(1, len(correct) + 1)
    recall = tp / n_positive
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    y = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(y.sum() / len(y) * 100)


# ---------------------------------------------------------------------------------------------
# TIDE's per-image matching and error typing, compiled


@numba.njit(cache=True)
def _iou(a, b, crowd):
    """pycocotools' box IoU (``iscrowd``: intersection over the detection's area)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = a[2] * a[3] if crowd else a[2] * a[3] + b[2] * b[3] - inter
    return inter / union


@numba.njit(cache=True)
def _match(g_start, g_box, g_cls, g_crowd, g_area, d_start, d_box, d_cls, d_score, lo, hi, ranged, max_dets,
           pos_thresh, bg_thresh):
    n_det, n_gt = d_box.shape[0], g_box.shape[0]
    state = np.full(n_det, -2, np.int8)
    kind = np.zeros(n_det, np.int8)
    fix_cls = np.full(n_det, -1, np.int64)
    g_counted = np.zeros(n_gt, np.bool_)
    g_used = np.zeros(n_gt, np.bool_)
    g_missed = np.zeros(n_gt, np.bool_)
    for im in range(len(g_start) - 1):
        g0, g1, d0, d1 = g_start[im], g_start[im + 1], d_start[im], d_start[im + 1]
        truths = np.empty(g1 - g0, np.int64)
        ignores = np.empty(g1 - g0, np.int64)
        nt = ni = 0
        for j in range(g0, g1):
            if g_crowd[j] or (ranged and (g_area[j] < lo or g_area[j] > hi)):
                ignores[ni] = j
                ni += 1
            else:
                truths[nt] = j
                nt += 1
                g_counted[j] = True
        dets = np.empty(d1 - d0, np.int64)  # the range's detections, at most max_dets
        nd = 0
        for i in range(d0, d1):
            if nd >= max_dets:
                break
            keep = True
            if ranged:
                area = d_box[i, 2] * d_box[i, 3]
                keep = lo <= area <= hi
                for t in range(nt):
                    if not keep and _iou(d_box[i], g_box[truths[t]], False) >= bg_thresh:
                        keep = True
            if keep:
                dets[nd] = i
                nd += 1
        if nd == 0:
            for t in range(nt):
                g_missed[truths[t]] = True
            continue
        iou = np.zeros((nd, nt))
        for a in range(nd):
            for t in range(nt):
                iou[a, t] = _iou(d_box[dets[a]], g_box[truths[t]], False)
        taken = np.zeros(nt, np.bool_)
        for a in range(nd):  # greedy, by score: the best IoU box of the class still free
            best, best_iou = -1, -1.0
            for t in range(nt):
                v = iou[a, t] if (d_cls[dets[a]] == g_cls[truths[t]] and not taken[t]) else 0.0
                if v > best_iou:
                    best, best_iou = t, v
            i = dets[a]
            state[i] = FP
            if best >= 0 and best_iou >= pos_thresh:
                state[i] = TP
                taken[best] = True
                g_used[truths[best]] = True
        for a in range(nd):
            i = dets[a]
            if state[i] != FP:
                continue
            for r in range(ni):
                g = ignores[r]
                if g_cls[g] == d_cls[i] and _iou(d_box[i], g_box[g], True) > pos_thresh:
                    state[i] = IGNORED
                    break
        if nt == 0:
            for a in range(nd):
                if state[dets[a]] != TP:
                    kind[dets[a]] = BKG
            continue
        usable = np.zeros(nt, np.bool_)
        best_score = np.full(nt, -1.0)
        best_det = np.full(nt, -1, np.int64)
        target = np.full(nd, -1, np.int64)
        for a in range(nd):
            i = dets[a]
            if state[i] == TP:
                continue
            # TIDE's argmax: the first box of the highest value (0 where nothing overlaps)
            m_cls, m_cls_t, m_non, m_non_t, m_used, m_any = 0.0, 0, 0.0, 0, 0.0, 0.0
            for t in range(nt):
                v = iou[a, t]
                same = d_cls[i] == g_cls[truths[t]]
                if same and v > m_cls:
                    m_cls, m_cls_t = v, t
                if not same and v > m_non:
                    m_non, m_non_t = v, t
                if same and taken[t] and v > m_used:
                    m_used = v
                if v > m_any:
                    m_any = v
            if bg_thresh <= m_cls <= pos_thresh:
                kind[i] = LOC
                t = m_cls_t
            elif m_non >= pos_thresh:
                kind[i] = CLS
                t = m_non_t
            elif m_used >= pos_thresh:
                kind[i] = DUPE
                continue
            elif m_any <= bg_thresh:
                kind[i] = BKG
                continue
            else:
                kind[i] = BOTH
                continue
            if not taken[t]:  # fixable: the box is free; TIDE fixes its best-scored error only
                usable[t] = True
                target[a] = t
                if best_score[t] < d_score[i]:
                    best_score[t], best_det[t] = d_score[i], a
        for a in range(nd):
            t = target[a]
            if t >= 0 and best_det[t] == a:
                i = dets[a]
                fix_cls[i] = d_cls[i] if kind[i] == LOC else g_cls[truths[t]]
        for t in range(nt):
            if not taken[t] and not usable[t]:
                g_missed[truths[t]] = True
    return state, kind, fix_cls, g_counted, g_used, g_missed


# ---------------------------------------------------------------------------------------------
# Confusion matrix with a background row and column


def confusion_matrix(gt, preds: list[dict], area_range=None, conf: float = 0.25, iou: float = 0.45) -> dict:
    """Ultralytics' detection confusion matrix (``ConfusionMatrix.process_batch``), transposed to
    rows = true class: detections scoring above ``conf`` (strictly, as Ultralytics: a score of
    exactly 0.25 after rounding is left out), taken in descending score order, each matched to the
    box of any class it overlaps most at IoU above ``iou``, a box once; rows the true class plus
    ``background`` (a detection of no box), columns the predicted class plus ``background`` (a box
    no detection found). With ``area_range``: the boxes of that range and the detections matched
    to them; unmatched detections by their own area. Why by hand: Ultralytics' works on one
    validation batch of tensors at its own class indices; this reads COCO files.

    Returns ``{"classes": [names..., "background"], "matrix": [[count]] (rows: true), "conf", "iou"}``."""
    from ..evaluate.matching import box_iou_xywh

    data = gt.data if isinstance(gt, CocoDataset) else gt
    cats = sorted(c["id"] for c in data["categories"])
    index = {c: k for k, c in enumerate(cats)}
    names = {c["id"]: c["name"] for c in data["categories"]}
    bg = len(cats)
    matrix = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    by_gt, by_dt = {}, {}
    for a in data["annotations"]:
        if not a.get("iscrowd"):
            by_gt.setdefault(a["image_id"], []).append(a)
    for p in preds:
        if p["score"] > conf:
            by_dt.setdefault(p["image_id"], []).append(p)

    def inside(box):
        area = box[2] * box[3]
        return area_range is None or area_range[0] <= area <= area_range[1]

    for image in data["images"]:
        truths, dets = by_gt.get(image["id"], []), by_dt.get(image["id"], [])
        g = np.array([t["bbox"] for t in truths], dtype=np.float64).reshape(-1, 4)
        d = np.array([p["bbox"] for p in dets], dtype=np.float64).reshape(-1, 4)
        overlap = box_iou_xywh(g, d, np.zeros(len(dets), dtype=bool)) if len(truths) and len(dets) \
            else np.zeros((len(truths), len(dets)))
        gt_match = np.full(len(truths), -1)
        candidates = np.flatnonzero((overlap > iou).any(0))
        scores = np.array([p["score"] for p in dets], dtype=np.float64)
        for i in candidates[np.argsort(-scores[candidates], kind="stable")]:
            j = int(overlap[:, i].argmax())
            if overlap[j, i] > iou:
                gt_match[j] = i
                overlap[j] = 0
        for j, t in enumerate(truths):
            if not inside(t["bbox"]):
                continue
            column = index[dets[gt_match[j]]["category_id"]] if gt_match[j] >= 0 else bg
            matrix[index[t["category_id"]], column] += 1
        matched = set(gt_match[gt_match >= 0].tolist())
        for i, p in enumerate(dets):
            if i not in matched and inside(p["bbox"]):
                matrix[bg, index[p["category_id"]]] += 1
    return {"classes": [names[c] for c in cats] + ["background"], "matrix": matrix.tolist(), "conf": conf, "iou": iou}


def confusion_matrices(gt, preds: list[dict], buckets: SizeBuckets, conf: float = 0.25, iou: float = 0.45) -> dict:
    return {"overall": confusion_matrix(gt, preds, None, conf, iou),
            "by_size": {name: confusion_matrix(gt, preds, (lo, hi), conf, iou) for name, lo, hi in buckets.ranges()}}


# ---------------------------------------------------------------------------------------------
# Plots


def plot_profiles(profiles: dict, path, title: str):
    """One bar group per size range (and overall; each labelled with its box count), the six
    error types side by side; with two runs (``{"A": profiles, "B": profiles}``), a third panel:
    B's ΔAP50 minus A's per type and range (below zero: B fixed that error)."""
    from .plots import plt, save_figure

    runs = profiles if "overall" not in profiles else {"": profiles}
    first = next(iter(runs.values()))
    groups = ["overall", *first["by_size"]]
    labels = [f"{g}\n({_get(first, g).get('gt_boxes', '?')} boxes)" for g in groups]
    panels = list(runs) + (["B - A"] if len(runs) == 2 else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7.0, 1.6 * len(groups) + 3), 3.4 * len(panels)), squeeze=False)
    width = 0.8 / len(MAIN_ERRORS)
    x = np.arange(len(groups))
    colors = {"Cls": "#e41a1c", "Loc": "#377eb8", "Both": "#984ea3", "Dupe": "#ff7f00", "Bkg": "#a65628", "Miss": "#4daf4a"}
    for ax, panel in zip(axes[:, 0], panels):
        for k, kind in enumerate(MAIN_ERRORS):
            if panel == "B - A":
                a, b = runs.values()
                values = [_get(b, g)[kind] - _get(a, g)[kind] for g in groups]
            else:
                values = [_get(runs[panel], g)[kind] for g in groups]
            ax.bar(x + (k - (len(MAIN_ERRORS) - 1) / 2) * width, values, width, label=kind, color=colors[kind])
        ax.set_xticks(x, labels, fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("ΔAP50 (points)" if panel != "B - A" else "ΔAP50 of B − A")
        ax.set_title(panel or title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=6, fontsize=8, loc="upper left")
    fig.suptitle(title + " — AP50 gained by fixing each error type (TIDE), per size range", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _get(profiles: dict, group: str) -> dict:
    return profiles["overall"] if group == "overall" else profiles["by_size"][group]


def plot_confusion(matrices: dict, path, title: str):
    """One heat map per size range (and overall): counts, rows true class, columns predicted."""
    from .plots import plt, save_figure

    groups = ["overall", *matrices["by_size"]]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.4), squeeze=False)
    for ax, g in zip(axes[0], groups):
        m = matrices["overall"] if g == "overall" else matrices["by_size"][g]
        counts = np.asarray(m["matrix"])
        ax.imshow(np.log1p(counts), cmap="Blues")
        names = m["classes"]
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7, ha="right")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for (i, j), v in np.ndenumerate(counts):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(g, fontsize=9)
    first = matrices["overall"]
    fig.suptitle(f"{title} — confusion matrix (conf > {first['conf']}, IoU > {first['iou']}; background: "
                 "a detection of no box (row) or a box no detection found (column))", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
