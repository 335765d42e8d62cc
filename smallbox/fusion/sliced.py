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

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import SmallboxError
from .overlap import ios_xyxy, iou_xyxy

PredictFn = Callable[[np.ndarray], tuple]
MERGES = ("greedy", "nms")
MERGE_CHOICES = ("edge", "nms", "greedy")  # edge: nms after fragments cut by an inner tile edge are dropped
EDGE_MARGIN = 2.0   # px: a tile box ending this close to an inner tile edge was cut by it
FRAGMENT_IOS = 0.5  # a cut box this much inside a box that was not cut is a fragment of that box
FULL_CHOICES = ("auto", "always", "never")
FULL_SHRINK = 1.5   # auto: no whole-image pass when it shows objects this much smaller than in training
METRICS = ("ios", "iou")


def tile_input_size(image_hw, tile: int, trained_imgsz: int, upscale: float, stride: int = 32,
                    train_scale: float | None = None) -> int:
    """The network input size for ``tile``-pixel tiles such that the tiles' objects are seen at
    most ``upscale`` times larger than the model saw objects in training, never above the tile's
    own size.

    The training scale is ``train_scale`` (input px per original px, recorded in the checkpoint
    at train time: imgsz over the training images' long side, or 1 for a model trained on tiles at
    their own size). Without it (a checkpoint from elsewhere) the training images are taken to be
    the size of the image being sliced: the whole image at ``trained_imgsz``, which holds only
    when they are (on images twice the training size it would shrink every tile twofold).

    Why: a model trained on downscaled images finds little at full resolution (on DeepPCB a
    YOLOv8n trained at 320 scores AP 0.21 at 320 and 0.01 at 640); Ultralytics' random scale
    augmentation (0.5x-1.5x) is the range it knows."""
    scale = train_scale if train_scale else trained_imgsz / max(image_hw)
    size = min(tile, tile * scale * upscale)
    return max(stride, int(round(size / stride)) * stride)


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
                   full: bool = True, merge: str = "greedy", metric: str = "ios", threshold: float = 0.5,
                   full_first: bool = False, tile_weight: float = 1.0, whole=None, batch: int = 1):
    """Predict on every tile (and the whole image), shift back, merge.

    Args:
        image_bgr: ``[H, W, 3]`` uint8.
        predict_fn: the model, see the module docstring; ``predict_fn.full`` (when present)
            predicts the whole image at the model's own input size.
        tile, overlap: tile side in pixels and overlap ratio (SAHI's ``slice_height/width``,
            ``overlap_height/width_ratio``).
        full: also predict on the whole image (SAHI's ``perform_standard_pred``).
        merge, metric, threshold: ``greedy`` (merge into the best box: union box, best score),
            ``nms``, or ``edge`` (:func:`drop_fragments`, then ``nms``); ``ios`` (intersection
            over the smaller box) or ``iou``; match when ``metric >= threshold``.
        full_first: keep the whole image's boxes as they are; the tiles' boxes (merged among
            themselves) only add what the whole image misses (no match at ``threshold``), their
            scores times ``tile_weight``. SAHI pools all boxes instead (``full_first=False``).
        whole: the whole image's prediction when the caller already has it (not predicted again).
        batch: tiles per forward pass (``predict_fn.batch``; 1: one call per tile). The tiles of
            an image share one size, so a batch letterboxes them alike: the same boxes.
    Returns:
        ``(xyxy_abs [N, 4] float64, scores [N], labels [N] int)``, by descending score.
    """
    height, width = image_bgr.shape[:2]
    parts, cut = [], []
    windows = slice_windows(width, height, tile, overlap).tolist()
    crops = [np.ascontiguousarray(image_bgr[y0:y1, x0:x1]) for x0, y0, x1, y1 in windows]
    if batch > 1 and hasattr(predict_fn, "batch"):
        outputs = []
        for start in range(0, len(crops), batch):
            outputs += predict_fn.batch(crops[start:start + batch])
    else:
        outputs = [predict_fn(c) for c in crops]
    for (x0, y0, x1, y1), out in zip(windows, outputs):
        boxes, scores, labels = _as_arrays(out)
        boxes = boxes + [x0, y0, x0, y0]
        parts.append((boxes, scores, labels))
        cut.append(cut_by_inner_edge(boxes, (x0, y0, x1, y1), width, height))
    if full and whole is None:
        whole = getattr(predict_fn, "full", predict_fn)(image_bgr)
    whole = _as_arrays(whole) if full else None
    if full_first and whole is not None:
        tiles = merge_predictions(*(np.concatenate(p) for p in zip(*parts)), merge, metric, threshold)
        return add_missed(whole, tiles, metric, threshold, tile_weight)
    if whole is not None:
        parts.append(whole)
        cut.append(np.zeros(len(whole[1]), dtype=bool))
    boxes, scores, labels = (np.concatenate(p) for p in zip(*parts))
    if merge == "edge":
        keep = ~drop_fragments(boxes, labels, np.concatenate(cut))
        boxes, scores, labels, merge = boxes[keep], scores[keep], labels[keep], "nms"
    return merge_predictions(boxes, scores, labels, merge, metric, threshold)


def cut_by_inner_edge(boxes: np.ndarray, window, width: int, height: int, margin: float = EDGE_MARGIN) -> np.ndarray:
    """Which boxes of a tile (image coordinates, ``[N, 4]``) end at one of the tile's inner edges
    (an edge that is not the image's border): the object may go on in the next tile."""
    x0, y0, x1, y1 = window
    flags = np.zeros(len(boxes), dtype=bool)
    if len(boxes):
        if x0 > 0:
            flags |= boxes[:, 0] <= x0 + margin
        if y0 > 0:
            flags |= boxes[:, 1] <= y0 + margin
        if x1 < width:
            flags |= boxes[:, 2] >= x1 - margin
        if y1 < height:
            flags |= boxes[:, 3] >= y1 - margin
    return flags


def drop_fragments(boxes: np.ndarray, labels: np.ndarray, cut: np.ndarray, ios: float = FRAGMENT_IOS) -> np.ndarray:
    """Which boxes are fragments to drop: cut by an inner tile edge and at least ``ios`` inside a
    box of the same class that was not cut (another tile's whole view of the object, or the whole
    image's), whatever the two scores.

    Why: NMS by IoU keeps the cut-off part of an object beside its whole box (a half box has IoU
    about 0.5 with the whole one, a third about 0.3), and with tied scores the fragment may even
    win. Measured where tiles are smaller than the image (docs/ensemble.md): 320 px tiles on the
    640 px DeepPCB images, AP_small 0.401 -> 0.422; 640 px tiles on 1280 px mosaics, no loss."""
    drop = np.zeros(len(boxes), dtype=bool)
    for label in np.unique(labels[cut]) if cut.any() else []:
        fragments = np.flatnonzero(cut & (labels == label))
        covers = np.flatnonzero(~cut & (labels == label))
        if len(covers):
            inside = ios_xyxy(boxes[fragments][:, None, :], boxes[covers][None, :, :]) >= ios
            drop[fragments[inside.any(axis=1)]] = True
    return drop


def add_missed(whole, extra, metric: str = "iou", threshold: float = 0.5, weight: float = 1.0):
    """``whole``'s detections unchanged, plus those of ``extra`` that match none of them (same
    class, ``metric >= threshold``), scored ``score * weight``. Each is ``(xyxy_abs [N, 4],
    scores [N], labels [N])``; the result is by descending score.

    Why: boxes from tiles are seen at another scale than the model was trained at; pooling them
    with the whole image's boxes (SAHI) lets a poor tile box replace or stretch a good one. Kept
    this way, the whole image's ranking is untouched and the tiles can only add recall."""
    w_boxes, w_scores, w_labels = whole
    e_boxes, e_scores, e_labels = extra
    keep = np.ones(len(e_scores), dtype=bool)
    if len(e_scores) and len(w_scores):
        fn = iou_xyxy if metric == "iou" else ios_xyxy
        overlap = fn(e_boxes[:, None, :], w_boxes[None, :, :]).astype(np.float32)
        same_class = e_labels[:, None] == w_labels[None, :]
        keep = ~((overlap >= threshold) & same_class).any(axis=1)
    boxes = np.concatenate([w_boxes, e_boxes[keep]])
    scores = np.concatenate([w_scores, e_scores[keep] * weight])
    labels = np.concatenate([w_labels, e_labels[keep]])
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], labels[order]


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
        raise SmallboxError(f"merge must be one of {MERGES} (edge: after drop_fragments) and metric one of {METRICS}")
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


DEFAULT_BATCH = 8  # bench_slice: the fastest on 2 CPU cores for 320 px tiles (docs/ensemble.md)


@dataclass(frozen=True)
class SliceOptions:
    """``smallbox slice``'s settings (the CLI's defaults), shared with the validator of a model
    trained on tiles, so that training and ``slice`` + ``eval`` score one model alike."""

    tile: int | None = None          # None: the model's training tile (tiled models), else DEFAULT_TILE
    overlap: float = 0.2
    full: str = "auto"               # auto | always | never (see wants_full)
    merge: str = "edge"
    match_metric: str = "iou"
    match_thr: float = 0.5
    imgsz: int | None = None         # None: from upscale and the model's training scale
    upscale: float = 1.25
    batch: int = DEFAULT_BATCH       # tiles per forward pass (the boxes do not depend on it)

    def tile_for(self, predict_fn) -> int:
        return self.tile or getattr(predict_fn, "trained_tile", None) or DEFAULT_TILE

    def wants_full(self, image_hw, predict_fn) -> bool:
        """The whole-image pass: ``always``, ``never``, or ``auto``: unless the image at the
        model's input size shows objects more than ``FULL_SHRINK`` times smaller than the model
        saw them in training (a 1280 px image for a model trained at 320 on 640 px images), where
        it adds little but false positives (on 2x2 DeepPCB mosaics: AP 0.405 with it, 0.428
        without)."""
        if self.full != "auto":
            return self.full == "always"
        trained, scale = getattr(predict_fn, "trained_imgsz", None), getattr(predict_fn, "train_scale", None)
        if not trained or not scale:
            return True
        return trained / max(image_hw) * FULL_SHRINK >= scale


DEFAULT_TILE = 640


def slice_images(images, predict_fn, options: SliceOptions, category_ids, progress: bool = True, eval_whole: bool = False):
    """Sliced inference of ``images`` (``[(image id, path)]``) as COCO results with those ids.

    Returns ``(predictions, whole-image predictions or [], seconds spent predicting)``; with
    ``eval_whole`` the whole image's own prediction is kept too (predicted once, used twice)."""
    import time

    import cv2
    from tqdm import tqdm

    from ..predictions import to_coco_results

    tile = options.tile_for(predict_fn)
    preds, whole_preds = [], []
    start = time.perf_counter()
    for image_id, path in tqdm(images, desc="slice", dynamic_ncols=True, disable=not progress):
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if pixels is None:
            raise SmallboxError(f"{path}: cannot read image")
        model = predict_fn
        if options.imgsz is None and getattr(predict_fn, "trained_imgsz", None):
            model = predict_fn.with_tile_size(tile_input_size(pixels.shape[:2], tile, predict_fn.trained_imgsz,
                                                              options.upscale, train_scale=predict_fn.train_scale))
        full = options.wants_full(pixels.shape[:2], predict_fn)
        whole = predict_fn.full(pixels) if eval_whole or full else None
        if eval_whole:
            whole_preds += to_coco_results(*whole, image_id, category_ids)
        boxes, scores, labels = predict_sliced(pixels, model, tile, options.overlap, full, options.merge,
                                               options.match_metric, options.match_thr, whole=whole if full else None,
                                               batch=options.batch)
        preds += to_coco_results(boxes, scores, labels, image_id, category_ids)
    return preds, whole_preds, time.perf_counter() - start
