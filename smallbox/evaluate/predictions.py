"""COCO results files (``[{"image_id", "category_id", "bbox": xywh_abs, "score"}]``): read,
validate against a ground truth, write."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import tempfile
from pathlib import Path

from ..datasets.coco import read_json
from ..datasets.errors import SmallboxError

MAX_LISTED = 10


def load_predictions(source, image_ids=None, category_ids=None, name=None) -> list[dict]:
    """Read (from a path) and validate COCO results.

    Args:
        source: a ``.json``/``.json.gz`` path or an already loaded list.
        image_ids, category_ids: the ids the ground truth knows; a prediction naming any other is
            an error.
    Returns:
        list[dict]: each with ``image_id``, ``category_id``, ``bbox`` (xywh_abs) and ``score``.
    """
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "predictions")
    preds = read_json(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(preds, list):
        raise SmallboxError(f"{name}: expected a json list of COCO results")
    image_ids = set(image_ids) if image_ids is not None else None
    category_ids = set(category_ids) if category_ids is not None else None
    if _all_valid(preds, image_ids, category_ids):
        return preds
    errors = _validate(preds, image_ids, category_ids)
    if errors:
        more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
        raise SmallboxError(f"{name}: {len(errors)} bad prediction(s):\n  " + "\n  ".join(errors[:MAX_LISTED]) + more)
    return preds


def _all_valid(preds: list, image_ids: set | None, category_ids: set | None) -> bool:
    """The common case in one vectorised pass (a 250k-prediction file in a fraction of a second);
    any doubt falls through to ``_validate``, which names each bad prediction."""
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


def _validate(preds: list, image_ids: set | None, category_ids: set | None) -> list[str]:
    errors = []
    for i, p in enumerate(preds):
        if not isinstance(p, dict) or not all(k in p for k in ("image_id", "category_id", "bbox", "score")):
            errors.append(f"prediction #{i} needs image_id, category_id, bbox and score")
            continue
        where = f"prediction #{i} (image {p['image_id']})"
        if image_ids is not None and p["image_id"] not in image_ids:
            errors.append(f"{where}: unknown image id {p['image_id']}")
        if category_ids is not None and p["category_id"] not in category_ids:
            errors.append(f"{where}: unknown category id {p['category_id']}")
        if not _finite(p["score"]):
            errors.append(f"{where}: score {p['score']!r} is not a finite number")
        b = p["bbox"]
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and all(_finite(v) for v in b)):
            errors.append(f"{where}: bbox {b!r} is not four finite numbers")
        elif b[2] < 0 or b[3] < 0:
            errors.append(f"{where}: bbox {list(b)} has a negative width or height")
        if len(errors) > 1000:
            break
    return errors


def write_json_atomic(obj, path) -> Path:
    """Write json to a temporary file beside ``path`` and rename it: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # json.dumps then one write: several times faster than json.dump's many small writes.
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
