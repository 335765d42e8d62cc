"""COCO results files (``[{"image_id", "category_id", "bbox": xywh_abs, "score"}]``, ``.json`` or
``.json.gz``): read, validate against a ground truth, write."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import SmallboxError
from ..fileio import read_json, write_json_atomic

MAX_LISTED = 10
KEYS = ("image_id", "category_id", "bbox", "score")


def only_ground_truth_images(preds: list, image_ids) -> tuple[list, dict]:
    """The predictions on the ground truth's images, and what was left out:
    ``{"predictions": n, "images": k}`` (predictions of a whole set scored against a split's json)."""
    image_ids = set(image_ids)
    kept = [p for p in preds if not isinstance(p, dict) or p.get("image_id") in image_ids]
    others = {p.get("image_id") for p in preds if isinstance(p, dict) and p.get("image_id") not in image_ids}
    return kept, {"predictions": len(preds) - len(kept), "images": len(others)}


def load_predictions(source, image_ids=None, category_ids=None, name=None, subset_option: str | None = None,
                     gt_images: list[dict] | None = None) -> list[dict]:
    """Read (from a path) and validate COCO results.

    Args:
        source: a ``.json``/``.json.gz`` path or an already loaded list.
        image_ids, category_ids: the ids the ground truth knows; a prediction naming any other is
            an error.
        subset_option: the caller's option that keeps only the ground truth's images (named in
            the message when predictions of a larger set meet a split's json).
        gt_images: the ground truth's ``images``: predictions numbered 1..N over a folder (an
            images json beside ``source``) must name the same files by id.
    Returns:
        list[dict]: each with ``image_id``, ``category_id``, ``bbox`` (xywh_abs) and ``score``.
    """
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "predictions")
    if gt_images is not None and isinstance(source, (str, os.PathLike)):
        from .images import check_folder_numbering

        check_folder_numbering(source, gt_images)
    preds = read_json(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(preds, list):
        raise SmallboxError(f"{name}: expected a json list of COCO results")
    image_ids = set(image_ids) if image_ids is not None else None
    category_ids = set(category_ids) if category_ids is not None else None
    if _all_valid(preds, image_ids, category_ids):
        return preds
    _raise_problems(name, preds, image_ids, category_ids, subset_option)
    return preds


def read_prediction_file(path, index) -> list[dict]:
    """One model's predictions on the images of ``index`` (an :class:`~.images.ImageIndex`):
    COCO results json / json.gz, or a competition CSV (file names and labels mapped to ids through
    ``index``, which then needs its category ids). An empty file is an error."""
    from .competition import read_competition_csv

    path = Path(path)
    if path.suffix.lower() == ".csv":
        if index.category_ids is None:
            raise SmallboxError(f"{path}: a competition CSV needs the ground truth (--gt): file names -> image ids, "
                                "labels -> category ids")
        by_name = {name: image_id for image_id, name in index.file_names().items()}
        preds = read_competition_csv(path, by_name, index.category_ids)
    else:
        preds = read_json(path)
    if isinstance(preds, list) and not preds:
        raise SmallboxError(f"{path}: no predictions (empty file)")
    if index.source == "json" and path.suffix.lower() != ".csv":
        from .images import check_folder_numbering

        check_folder_numbering(path, index.images)
    return load_predictions(preds, index.ids, index.category_ids, name=str(path))


def write_predictions(preds: list[dict], path) -> Path:
    """Write COCO results to ``path`` (``.json``, or gzip-compressed ``.json.gz``) atomically."""
    return write_json_atomic(preds, path)


def _all_valid(preds: list, image_ids: set | None, category_ids: set | None) -> bool:
    """The common case in one vectorised pass (a 250k-prediction file in a fraction of a second);
    any doubt falls through to the per-prediction checks, which name each bad prediction."""
    try:
        boxes = np.array([p["bbox"] for p in preds])
        scores = np.array([p["score"] for p in preds])
        images = {p["image_id"] for p in preds}
        categories = {p["category_id"] for p in preds}
    except (KeyError, TypeError, ValueError):
        return False
    if not preds:
        return True
    numeric = boxes.dtype.kind in "if" and scores.dtype.kind in "if" and boxes.shape == (len(preds), 4)
    return (numeric and bool(np.isfinite(boxes).all()) and bool(np.isfinite(scores).all())
            and bool((boxes[:, 2:] >= 0).all())
            and (image_ids is None or images <= image_ids) and (category_ids is None or categories <= category_ids))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _raise_problems(name: str, preds: list, image_ids: set | None, category_ids: set | None,
                    subset_option: str | None = None):
    """A message a user can act on: a wrong dataset or 0-based category ids are said as such,
    other problems are listed once per kind and image."""
    shaped = [p for p in preds if isinstance(p, dict) and all(k in p for k in KEYS)]
    if len(shaped) == len(preds) and len(preds) > 1:  # one prediction is just a bad prediction
        _raise_if_wrong_ids(name, preds, image_ids, category_ids, subset_option)
    problems = Counter()  # (image, kind) -> how many predictions
    first = {}  # (image, kind) -> (index, message) of the first such prediction
    bad = set()
    for i, p in enumerate(preds):
        for kind, message in _problems(p, image_ids, category_ids):
            key = (p.get("image_id") if isinstance(p, dict) else None, kind)
            problems[key] += 1
            first.setdefault(key, (i, message))
            bad.add(i)
    if not problems:
        return
    n_bad = len(bad)
    lines = []
    for key, count in sorted(problems.items(), key=lambda kv: first[kv[0]][0])[:MAX_LISTED]:
        (index, message), image = first[key], key[0]
        where = f"prediction #{index}" + (f" (image {image})" if image is not None else "")
        lines.append(f"{where}: {message}" + (f" (and {count - 1} more like it on this image)" if count > 1 else ""))
    more = f"\n  ... and {len(problems) - MAX_LISTED} more kinds of problem" if len(problems) > MAX_LISTED else ""
    hint = f"\n{_subset_hint(subset_option)}" if subset_option and any(k == "image" for _, k in problems) else ""
    raise SmallboxError(f"{name}: {n_bad:,} of {len(preds):,} predictions are invalid:\n  " + "\n  ".join(lines) + more + hint)


def _raise_if_wrong_ids(name: str, preds: list, image_ids: set | None, category_ids: set | None,
                        subset_option: str | None = None):
    if image_ids is not None:
        known = sum(p["image_id"] in image_ids for p in preds)
        if known == 0:
            theirs = sorted({p["image_id"] for p in preds}, key=str)
            raise SmallboxError(
                f"{name}: 0 of {len(preds):,} predictions name an image of this ground truth: wrong dataset or split? "
                f"(prediction image ids {_ids(theirs)}; ground truth {_ids(sorted(image_ids, key=str))}). "
                "Predictions of an unlabeled folder are numbered 1..N by file name (see images.json beside them): "
                "predict again with the ground truth (--gt / --coco / SMALLBOX_IMAGE_IDS)")
        others = sorted({p["image_id"] for p in preds if p["image_id"] not in image_ids}, key=str)
        if len(others) > MAX_LISTED:  # a larger set than the ground truth's: said once, not per image
            raise SmallboxError(
                f"{name}: {len(preds) - known:,} of {len(preds):,} predictions are on {len(others):,} image(s) the ground "
                f"truth does not hold (ids {_ids(others)}): predictions of a larger set (a whole val set) against "
                f"a split of it? {_subset_hint(subset_option)}")
    if category_ids is not None:
        theirs = {p["category_id"] for p in preds}
        shifted = {c + 1 for c in theirs if isinstance(c, int)}
        if 0 in theirs and not theirs <= category_ids and shifted <= category_ids:
            raise SmallboxError(
                f"{name}: category ids {_ids(sorted(theirs, key=str))} look 0-based (class indices), the ground truth's "
                f"are {_ids(sorted(category_ids))}: category id = class index + 1 here (smallbox's exports use the "
                "dataset's own ids; Ultralytics' own predictions.json uses 1..nc)")
        if not theirs & category_ids:
            hint = ""
            if all(isinstance(c, int) for c in theirs) and {c + 1 for c in theirs} <= category_ids:
                hint = " They look 0-based (class indices): category id = class index + 1 here."
            raise SmallboxError(
                f"{name}: 0 of {len(preds):,} predictions name a category of this ground truth "
                f"(prediction category ids {_ids(sorted(theirs, key=str))}; ground truth {_ids(sorted(category_ids))}).{hint}")


def _subset_hint(subset_option: str | None) -> str:
    if subset_option:
        return f"Add {subset_option} to score only the ground truth's images (the others' predictions left out), or predict the split itself"
    return "Keep only the ground truth's images' predictions, or predict the split itself"


def _ids(values: list) -> str:
    shown = ", ".join(map(str, values[:6]))
    return f"[{shown}{', ...' if len(values) > 6 else ''}] ({len(values):,} distinct)"


def _problems(p, image_ids: set | None, category_ids: set | None) -> list[tuple[str, str]]:
    """``[(kind, message)]`` of one prediction."""
    if not isinstance(p, dict) or not all(k in p for k in KEYS):
        return [("shape", "needs image_id, category_id, bbox and score")]
    out = []
    if image_ids is not None and p["image_id"] not in image_ids:
        out.append(("image", f"unknown image id {p['image_id']!r}"))
    if category_ids is not None and p["category_id"] not in category_ids:
        out.append(("category", f"unknown category id {p['category_id']!r}"))
    if not _finite(p["score"]):
        out.append(("score", f"score {p['score']!r} is not a finite number"))
    b = p["bbox"]
    if not (isinstance(b, (list, tuple)) and len(b) == 4 and all(_finite(v) for v in b)):
        out.append(("bbox", f"bbox {b!r} is not four finite numbers"))
    elif b[2] < 0 or b[3] < 0:
        out.append(("size", f"bbox {list(b)} has a negative width or height"))
    return out


def prediction_notes(preds: list[dict], name: str) -> list[str]:
    """What in a valid predictions file would change a number without an error: rows repeated
    exactly (each repeat is one more false positive, AP drops) and scores outside [0, 1]
    (fusion averages them into nonsense). One line each, with counts and the first image ids."""
    notes = []
    seen, repeated = set(), []
    for p in preds:
        key = (p["image_id"], p["category_id"], tuple(p["bbox"]), p["score"])
        if key in seen:
            repeated.append(p["image_id"])
        seen.add(key)
    if repeated:
        first = ", ".join(map(str, list(dict.fromkeys(repeated))[:5]))
        notes.append(f"{name}: {len(repeated):,} prediction row(s) repeat an earlier row exactly (images {first}"
                     f"{', ...' if len(set(repeated)) > 5 else ''}): each repeat counts as one more false positive")
    outside = [p["image_id"] for p in preds if not 0 <= p["score"] <= 1]
    if outside:
        scores = [p["score"] for p in preds if not 0 <= p["score"] <= 1]
        notes.append(f"{name}: {len(outside):,} score(s) outside [0, 1] (from {min(scores):g} to {max(scores):g}; images "
                     f"{', '.join(map(str, list(dict.fromkeys(outside))[:5]))}): not a probability")
    return notes
