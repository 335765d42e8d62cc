"""Detections -> COCO results: the one place where model outputs become prediction records.

A record is ``{"image_id", "category_id", "bbox": xywh_abs, "score"}`` with the ORIGINAL image
and category ids. Every exporter (YOLO val / predict, the torchvision path, sliced inference,
ensembles) goes through :func:`to_coco_results`, so one rounding rule holds everywhere: boxes to
1/1000 px and scores to 5 decimals, as Ultralytics rounds its own json. The list kept in memory
(and evaluated every epoch) and the file written from it hold the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..datasets.boxes import xyxy_abs_to_xywh_abs
from ..errors import SmallboxError

BOX_DECIMALS = 3
SCORE_DECIMALS = 5


def to_coco_results(xyxy_abs, scores, labels, image_ids, category_ids=None) -> list[dict]:
    """COCO results of detections.

    Args:
        xyxy_abs: boxes ``[N, 4]`` in original-image pixels.
        scores: ``[N]`` confidences.
        labels: ``[N]`` class indices ``0..K-1`` mapped through ``category_ids``, or, when
            ``category_ids`` is None, the category ids themselves.
        image_ids: the image id of all boxes (int), or ``[N]`` one per box.
        category_ids: ``category_ids[class index]`` is the COCO category id.
    Returns:
        list[dict] in the order of the inputs.
    """
    boxes = np.round(xyxy_abs_to_xywh_abs(xyxy_abs), BOX_DECIMALS).tolist()
    scores = np.round(np.asarray(scores, dtype=np.float64).reshape(-1), SCORE_DECIMALS).tolist()
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if category_ids is not None:
        if len(labels) and (labels.min() < 0 or labels.max() >= len(category_ids)):
            bad = int(labels.min() if labels.min() < 0 else labels.max())
            raise SmallboxError(f"class index {bad} has no category: the model knows {len(category_ids)} classes "
                                f"(category ids {list(category_ids)[:10]})")
        labels = np.asarray(category_ids)[labels]
    cats = labels.tolist()
    if np.ndim(image_ids) == 0:
        image_ids = [image_ids] * len(cats)
    elif not isinstance(image_ids, list):
        image_ids = np.asarray(image_ids).tolist()
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in zip(image_ids, cats, boxes, scores)]
