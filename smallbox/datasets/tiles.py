"""Tiled training data: every training image cut into overlapping tiles at its native resolution,
each tile a training image with its boxes clipped to it (``smallbox convert --tiles SIZE[,OVERLAP]``).

Why: a 12 px object in a 1024 px photo trained at 640 px becomes 7 px; trained on 640 px tiles
of the original it stays 12 px, and sliced inference then shows the model objects at the scale it
learned them (SAHI's main result, Akyon et al. 2022).

The tiles are SAHI's (``sahi.slicing.slice_coco``, checked against it in the tests):

- windows: :func:`smallbox.fusion.sliced.slice_windows` (``get_slice_bboxes``: the last row and
  column moved back inside the image), the same windows sliced inference uses;
- a box belongs to a tile when it overlaps it (strictly), clipped to the tile, shifted to the
  tile's origin, and kept when the clipped area is at least ``min_visibility`` of its own
  (SAHI's ``min_area_ratio``, 0.1 by default);
- tile file ``<stem>_<x0>_<y0>_<x1>_<y1><suffix>`` (SAHI's, without its running index).

Tiles with no box are kept at the ratio ``empty`` (1.0: all, SAHI's default; fewer by a seeded
draw). Each tile gets a new image id (1..N in order); the manifest maps it back to its source
image id and offset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SmallboxError

TILES_SPLIT = "train-tiles"
DEFAULT_OVERLAP = 0.2
DEFAULT_MIN_VISIBILITY = 0.1


@dataclass(frozen=True)
class TileSpec:
    """``--tiles SIZE[,OVERLAP]``, ``--min-visibility``, ``--empty-tiles``."""

    size: int
    overlap: float = DEFAULT_OVERLAP
    min_visibility: float = DEFAULT_MIN_VISIBILITY
    empty: float = 1.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str, min_visibility: float = DEFAULT_MIN_VISIBILITY, empty: float = 1.0, seed: int = 0):
        parts = str(text).split(",")
        try:
            size = int(parts[0])
            overlap = float(parts[1]) if len(parts) > 1 else DEFAULT_OVERLAP
        except ValueError:
            raise SmallboxError(f"--tiles {text!r}: give SIZE or SIZE,OVERLAP, e.g. 640 or 640,0.2") from None
        if len(parts) > 2 or size < 32 or not 0 <= overlap < 1:
            raise SmallboxError(f"--tiles {text!r}: SIZE an integer of at least 32, OVERLAP in [0, 1)")
        if not 0 < min_visibility <= 1:
            raise SmallboxError(f"--min-visibility {min_visibility}: must lie in (0, 1]")
        if not 0 <= empty <= 1:
            raise SmallboxError(f"--empty-tiles {empty}: must lie in [0, 1]")
        return cls(size, overlap, min_visibility, empty, seed)

    def to_dict(self) -> dict:
        return {"size": self.size, "overlap": self.overlap, "min_visibility": self.min_visibility,
                "empty": self.empty, "seed": self.seed}


def tile_name(file_name: str, window) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    stem, suffix = (stem, dot + suffix) if dot else (base, "")
    return f"{stem}_{'_'.join(str(int(v)) for v in window)}{suffix}"


def clip_to_window(bbox, window, min_visibility: float):
    """SAHI's rule for one ``[x, y, w, h]`` box and a tile ``[x0, y0, x1, y1]``: the clipped box
    in tile coordinates, or None (no strict overlap, or less than ``min_visibility`` visible)."""
    x, y, w, h = bbox
    x0, y0, x1, y1 = window
    if x >= x1 or y >= y1 or x + w <= x0 or y + h <= y0:
        return None
    cx0, cy0, cx1, cy1 = max(x, x0), max(y, y0), min(x + w, x1), min(y + h, y1)
    area = w * h
    if area <= 0 or (cx1 - cx0) * (cy1 - cy0) / area < min_visibility:
        return None
    return [cx0 - x0, cy0 - y0, cx1 - cx0, cy1 - cy0]


def tile_dataset(data: dict, spec: TileSpec) -> tuple[dict, dict]:
    """The tiles of a COCO json dict: ``(tiles json dict, {tile file name: origin})`` where
    ``origin = {"image_id", "x", "y", "width", "height"}`` (the source image and the window)."""
    from ..fusion.sliced import slice_windows

    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    rng = np.random.default_rng(spec.seed)
    images, annotations, origins = [], [], {}
    for image in data["images"]:
        for window in slice_windows(image["width"], image["height"], spec.size, spec.overlap).tolist():
            boxes = [(a, clip_to_window(a["bbox"], window, spec.min_visibility)) for a in by_image.get(image["id"], [])]
            boxes = [(a, b) for a, b in boxes if b is not None]
            if not any(not a.get("iscrowd") for a, _ in boxes) and spec.empty < 1 and rng.random() >= spec.empty:
                continue
            tile_id = len(images) + 1
            name = tile_name(image["file_name"], window)
            images.append({"id": tile_id, "file_name": name, "width": window[2] - window[0],
                           "height": window[3] - window[1]})
            origins[name] = {"image_id": image["id"], "file_name": image["file_name"], "x": window[0], "y": window[1],
                             "width": window[2] - window[0], "height": window[3] - window[1]}
            for a, b in boxes:
                annotations.append({"id": len(annotations) + 1, "image_id": tile_id, "category_id": a["category_id"],
                                    "bbox": b, "area": b[2] * b[3], "iscrowd": int(a.get("iscrowd", 0))})
    if len({im["file_name"] for im in images}) != len(images):
        raise SmallboxError("two source images give tiles of the same name (same file stem in two folders): "
                            "rename one of them")
    return {**{k: v for k, v in data.items() if k not in ("images", "annotations")}, "images": images,
            "annotations": annotations}, origins


def write_tile_images(data: dict, image_root: Path, origins: dict, folder: Path, progress: bool = True) -> None:
    """Crop every tile from its source image into ``folder`` (same format as the source; PNG
    stays lossless, a JPEG source is re-encoded at quality 95)."""
    from PIL import Image, ImageOps
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    by_source: dict[str, list[tuple[str, dict]]] = {}
    for name, origin in origins.items():
        by_source.setdefault(origin["file_name"], []).append((name, origin))
    with tqdm(total=len(origins), desc="tiles", unit="tile", disable=not progress) as bar:
        for file_name, tiles in by_source.items():
            with Image.open(os.path.join(image_root, file_name)) as source:
                pixels = ImageOps.exif_transpose(source)  # the orientation Ultralytics (cv2) loads
                for name, o in tiles:
                    crop = pixels.crop((o["x"], o["y"], o["x"] + o["width"], o["y"] + o["height"]))
                    options = {"quality": 95} if name.lower().endswith((".jpg", ".jpeg")) else {}
                    crop.save(folder / name, **options)
                    bar.update(1)
