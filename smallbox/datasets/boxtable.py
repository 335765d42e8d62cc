"""The boxes of a COCO dataset as columns: what the EDA computes on and plots."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SmallboxError
from .coco import CocoDataset

# Above this many boxes the work is slow enough (seconds) to deserve a progress bar.
LARGE_DATASET = 100_000


@dataclass
class BoxTable:
    """One row per non-crowd box, as arrays of shape ``[N]``.

    ``image_ids`` / ``category_ids`` are COCO ids; ``x, y, width, height`` the bbox in
    ``xywh_abs`` (original pixels); ``image_width`` / ``image_height`` the size of the image the box lies in.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    width: np.ndarray
    height: np.ndarray
    image_width: np.ndarray
    image_height: np.ndarray
    area_field: np.ndarray  # the json's ``area`` (what pycocotools buckets by), NaN where absent
    all_image_ids: np.ndarray  # every image of the json, shape ``[I]``
    category_names: dict
    crowd: int

    @property
    def area(self) -> np.ndarray:
        return self.width * self.height

    def __len__(self) -> int:
        return len(self.width)


def box_table(dataset: CocoDataset, progress: bool | None = None) -> BoxTable:
    """Collect the boxes of a validated dataset into arrays (one pass over the annotations)."""
    anns = dataset.annotations
    progress = len(anns) >= LARGE_DATASET if progress is None else progress
    sizes = {im["id"]: (im["width"], im["height"]) for im in dataset.images}
    rows, crowd = [], 0
    for a in _maybe_tqdm(anns, progress, "reading boxes"):
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        x, y, w, h = a["bbox"]
        area = a.get("area")
        rows.append((a["image_id"], a["category_id"], x, y, w, h, *sizes[a["image_id"]], area if area is not None else math.nan))
    if not rows:
        raise SmallboxError(f"{dataset.path}: no (non-crowd) boxes to analyse")
    cols = np.array(rows, dtype=np.float64).T
    return BoxTable(
        image_ids=cols[0].astype(np.int64),
        category_ids=cols[1].astype(np.int64),
        x=cols[2], y=cols[3], width=cols[4], height=cols[5], image_width=cols[6], image_height=cols[7], area_field=cols[8],
        all_image_ids=np.array([im["id"] for im in dataset.images], dtype=np.int64),
        category_names={c["id"]: c["name"] for c in sorted(dataset.categories, key=lambda c: c["id"])},
        crowd=crowd,
    )


def _maybe_tqdm(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit="box", unit_scale=True, leave=False)


def boxes_per_image(table: BoxTable) -> np.ndarray:
    """Number of boxes of every image of the json (images without boxes give 0), shape ``[I]``."""
    sorter = np.argsort(table.all_image_ids)
    positions = sorter[np.searchsorted(table.all_image_ids, table.image_ids, sorter=sorter)]
    return np.bincount(positions, minlength=table.all_image_ids.size)
