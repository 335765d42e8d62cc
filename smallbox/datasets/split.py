"""Splits of a COCO dataset: a seeded train/val split by image that keeps every class in both
parts, and per-area subsets (only the boxes whose area lies in a range).

Areas are ``bbox`` width × height in original-image pixels², the same number
``SizeBuckets`` and ``CocoDataset.areas()`` use (not the annotation's ``area`` field, which in
COCO proper is the segmentation's area). Ranges are half-open, ``min <= area < max``, as in
``SizeBuckets``: ``small:0:1024`` and ``rest:1024:inf`` never share a box.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import SmallboxError

AREA_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class AreaRange:
    """A named box-area range ``[min_area, max_area)`` in original-image pixels²."""

    name: str
    min_area: float
    max_area: float

    def contains(self, areas) -> np.ndarray:
        """Boolean mask, shape of ``areas``."""
        areas = np.asarray(areas, dtype=np.float64)
        return (areas >= self.min_area) & (areas < self.max_area)

    def to_dict(self) -> dict:
        return {"name": self.name, "min_area": self.min_area, "max_area": self.max_area}  # YAML writes inf as .inf


def parse_area_range(spec: str) -> AreaRange:
    """``NAME:MIN:MAX``, e.g. ``small:0:1024``, ``upto96:0:96^2``, ``big:9216:inf``."""
    parts = str(spec).split(":")
    if len(parts) != 3 or not AREA_SPLIT_NAME.match(parts[0]):
        raise SmallboxError(f"--split must be NAME:MIN_AREA:MAX_AREA with NAME of letters, digits, _ (e.g. small:0:1024), got {spec!r}")
    try:
        lo, hi = (_parse_area(p) for p in parts[1:])
    except ValueError:
        raise SmallboxError(f"--split {spec!r}: areas must be numbers in px², side^2 or inf") from None
    if not (0 <= lo < hi):
        raise SmallboxError(f"--split {spec!r}: need 0 <= MIN_AREA < MAX_AREA")
    return AreaRange(parts[0], lo, hi)


def _parse_area(text: str) -> float:
    text = text.strip()
    return float(text[:-2]) ** 2 if text.endswith("^2") else float(text)


def bbox_areas(annotations: list[dict]) -> np.ndarray:
    """``w*h`` of each annotation's bbox, shape ``[N]``."""
    return np.array([a["bbox"][2] * a["bbox"][3] for a in annotations], dtype=np.float64).reshape(-1)


def area_subset(data: dict, area_range: AreaRange, drop_empty: bool) -> dict:
    """A COCO json dict holding only the annotations whose area is in ``area_range``.

    Images left without an in-range (non-crowd) box stay as negatives unless ``drop_empty``.
    In-range crowd boxes stay too: COCO evaluation ignores them, YOLO labels leave them out.
    """
    annotations = data["annotations"]
    keep = area_range.contains(bbox_areas(annotations))
    kept = [a for a, k in zip(annotations, keep) if k]
    images = data["images"]
    if drop_empty:
        with_boxes = {a["image_id"] for a in kept if not a.get("iscrowd")}
        images = [im for im in images if im["id"] in with_boxes]
        image_ids = {im["id"] for im in images}
        kept = [a for a in kept if a["image_id"] in image_ids]
    return {**data, "images": images, "annotations": kept}


def split_by_image(data: dict, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/val split of the image ids that keeps every class in both parts where it can.

    Each image is filed under the rarest class it holds (fewest images); within each such stratum
    a ``val_fraction`` share (at least one image of a stratum of two or more) goes to val. A last
    pass moves single images to bring a class still missing from one part into it, never taking
    a class's last image out of the other part. Deterministic for a seed.

    Returns:
        (train ids, val ids), each in the order of ``data["images"]``.
    """
    if not 0 < val_fraction < 1:
        raise SmallboxError(f"--val-fraction must lie strictly between 0 and 1, got {val_fraction}")
    image_ids = [im["id"] for im in data["images"]]
    if len(image_ids) < 2:
        raise SmallboxError(f"need at least 2 images to make a train/val split, got {len(image_ids)}")
    classes = {i: set() for i in image_ids}
    for a in data["annotations"]:
        if not a.get("iscrowd"):
            classes[a["image_id"]].add(a["category_id"])
    images_per_class = Counter(c for cs in classes.values() for c in cs)
    strata: dict[int | None, list[int]] = {}
    for i in image_ids:
        rarest = min(classes[i], key=lambda c: (images_per_class[c], c), default=None)
        strata.setdefault(rarest, []).append(i)
    rng = np.random.default_rng(seed)
    val = set()
    for key in sorted(strata, key=lambda k: (k is not None, k or 0)):
        ids = strata[key]
        n_val = round(len(ids) * val_fraction)
        if len(ids) >= 2:
            n_val = min(max(n_val, 1), len(ids) - 1)
        val.update(ids[j] for j in rng.permutation(len(ids))[:n_val])
    if not val or len(val) == len(image_ids):  # many one-image strata: neither part may be empty
        flip = image_ids[int(rng.integers(len(image_ids)))] if not val else sorted(val)[0]
        val.symmetric_difference_update({flip})
    _bring_every_class_into_both(image_ids, classes, val)
    return [i for i in image_ids if i not in val], [i for i in image_ids if i in val]


def _bring_every_class_into_both(image_ids: list[int], classes: dict[int, set], val: set):
    """Move single images so that each class held by two or more images appears in both parts."""
    for c in sorted({c for cs in classes.values() for c in cs}):
        holders = [i for i in image_ids if c in classes[i]]
        if len(holders) < 2:
            continue
        for into_val in (True, False):
            if any((i in val) == into_val for i in holders):
                continue
            # candidates sit in the other part; moving one must not empty that part of a class
            counts = Counter(c2 for i in image_ids if (i in val) != into_val for c2 in classes[i])
            movable = [i for i in holders if all(counts[c2] >= 2 for c2 in classes[i])]
            if movable:
                moved = min(movable, key=lambda i: len(classes[i]))
                if into_val:
                    val.add(moved)
                else:
                    val.discard(moved)
