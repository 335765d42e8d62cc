"""Load and validate a COCO detection json.

Every problem names the file and the offending image / annotation / category id; all problems
of a file are reported together (up to ``MAX_LISTED``) so a user fixes them in one pass.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import SmallboxError
from ..fileio import read_json

MAX_LISTED = 20
OUT_OF_BOUNDS = ("error", "clip")


@dataclass
class CocoDataset:
    """A validated COCO detection dataset.

    ``data`` is the json itself (``images``, ``annotations``, ``categories``), with ``area``
    filled in as ``w*h`` where it was missing, ``iscrowd`` defaulted to 0, and boxes clipped to
    the image when ``out_of_bounds="clip"``.
    """

    path: Path
    data: dict
    image_root: Path | None = None
    warnings: list[str] = field(default_factory=list)
    clipped: int = 0

    @property
    def images(self) -> list[dict]:
        return self.data["images"]

    @property
    def annotations(self) -> list[dict]:
        return self.data["annotations"]

    @property
    def categories(self) -> list[dict]:
        return self.data["categories"]

    @property
    def category_ids(self) -> list[int]:
        """Category ids in ascending order: position ``i`` is YOLO class index ``i``."""
        return sorted(c["id"] for c in self.categories)

    @property
    def category_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.categories}

    def image_path(self, image: dict) -> Path:
        if self.image_root is None:
            raise SmallboxError(f"{self.path}: no image root given to find {image['file_name']!r}")
        return self.image_root / image["file_name"]

    def areas(self, include_crowd: bool = False) -> np.ndarray:
        """Box areas ``w*h`` in original pixels², shape ``[N]``."""
        return np.array(
            [a["bbox"][2] * a["bbox"][3] for a in self.annotations if include_crowd or not a.get("iscrowd", 0)],
            dtype=np.float64,
        )

    def annotations_by_image(self) -> dict[int, list[dict]]:
        by_image = {im["id"]: [] for im in self.images}
        for a in self.annotations:
            by_image[a["image_id"]].append(a)
        return by_image

    def subset(self, image_ids) -> "CocoDataset":
        """The same dataset restricted to ``image_ids`` (order of the original kept)."""
        keep = set(image_ids)
        data = dict(self.data)
        data["images"] = [im for im in self.images if im["id"] in keep]
        data["annotations"] = [a for a in self.annotations if a["image_id"] in keep]
        return CocoDataset(self.path, data, self.image_root)


def load_coco(path, image_root=None, out_of_bounds: str = "error", check_files: bool = True) -> CocoDataset:
    """Read and validate a COCO detection json.

    Args:
        path: the json (or json.gz).
        image_root: folder that ``file_name`` is relative to; when given (and ``check_files``),
            every image file must exist.
        out_of_bounds (str): ``"error"`` rejects boxes reaching outside the image, ``"clip"``
            clips them to it and counts them in ``CocoDataset.clipped``.
    Raises:
        SmallboxError: listing every problem, each naming its id.
    """
    if out_of_bounds not in OUT_OF_BOUNDS:
        raise SmallboxError(f"out_of_bounds must be one of {OUT_OF_BOUNDS}, got {out_of_bounds!r}")
    path = Path(path)
    data = read_json(path)
    root = Path(image_root) if image_root is not None else None
    if root is not None and not root.is_dir():
        raise SmallboxError(f"{root}: image folder does not exist")
    checker = _Checker(path, root if check_files else None, out_of_bounds)
    checker.run(data)
    return CocoDataset(path, data, root, checker.warnings, checker.clipped)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_NUMBER_TYPES = (int, float)  # what json gives; bool is excluded by the exact type test


def _is_number(x) -> bool:
    return type(x) in _NUMBER_TYPES and math.isfinite(x)


def _is_box(b) -> bool:
    """Four finite numbers. The one ``isfinite`` of the sum is the hot path of a 100k-box file:
    a sum of finite numbers is finite (short of overflowing 1e308, far outside any image)."""
    return type(b) is list and len(b) == 4 and all(type(v) in _NUMBER_TYPES for v in b) and math.isfinite(sum(b))


class _Checker:
    def __init__(self, path: Path, image_root: Path | None, out_of_bounds: str):
        self.path, self.image_root, self.out_of_bounds = path, image_root, out_of_bounds
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.clipped = 0
        self.rejected_images: set = set()  # ids of images already reported, not "unknown"

    def error(self, msg: str):
        self.errors.append(msg)

    def run(self, data):
        if not isinstance(data, dict):
            raise SmallboxError(f"{self.path}: expected a json object with images, annotations, categories")
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
        if missing:
            raise SmallboxError(f"{self.path}: missing or not a list: {', '.join(missing)}")
        images = self.check_images(data["images"])
        categories = self.check_categories(data["categories"])
        self.check_annotations(data["annotations"], images, categories)
        if self.errors:
            shown = self.errors[:MAX_LISTED]
            more = len(self.errors) - len(shown)
            tail = f"\n  ... and {more} more" if more else ""
            raise SmallboxError(f"{self.path}: {len(self.errors)} problem(s):\n  " + "\n  ".join(shown) + tail)
        self.collect_warnings(data)

    def check_images(self, images) -> dict:
        by_id = {}
        for i, im in enumerate(images):
            where = f"image {im.get('id', f'#{i}')}" if isinstance(im, dict) else f"image #{i}"
            if not isinstance(im, dict):
                self.error(f"{where} is not an object")
                continue
            lacking = [k for k in ("id", "file_name", "width", "height") if k not in im]
            if lacking:
                self.error(f"{where} lacks {', '.join(lacking)}")
                continue
            if not _is_int(im["id"]):
                self.error(f"{where} has a non-integer id")
                continue
            if im["id"] in by_id:
                self.error(f"duplicate image id {im['id']}")
                continue
            if not (_is_number(im["width"]) and _is_number(im["height"]) and im["width"] > 0 and im["height"] > 0):
                self.error(f"{where} has width/height {im['width']}/{im['height']}")
                self.rejected_images.add(im["id"])
                continue
            if self.check_file_name(where, im["file_name"]):
                by_id[im["id"]] = im
            else:
                self.rejected_images.add(im["id"])
        return by_id

    def check_file_name(self, where: str, name) -> bool:
        if not isinstance(name, str) or not name:
            self.error(f"{where} has file_name {name!r}")
            return False
        posix = PurePosixPath(name.replace("\\", "/"))
        if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
            self.error(f"{where} has an absolute file_name {name!r}")
            return False
        if os.path.normpath(str(posix)).split(os.sep)[0] == "..":
            self.error(f"{where} has a file_name escaping the image root: {name!r}")
            return False
        if self.image_root is not None and not (self.image_root / name).is_file():
            self.error(f"{where}: image file not found: {self.image_root / name}")
            return False
        return True

    def check_categories(self, categories) -> dict:
        by_id = {}
        for i, c in enumerate(categories):
            if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
                self.error(f"category #{i} needs an integer id and a name: {c!r}"[:200])
                continue
            if c["id"] in by_id:
                self.error(f"duplicate category id {c['id']}")
                continue
            by_id[c["id"]] = c
        return by_id

    def check_annotations(self, annotations, images: dict, categories: dict):
        seen = set()
        for i, a in enumerate(annotations):
            if not isinstance(a, dict):
                self.error(f"annotation #{i} is not an object")
                continue
            where = f"annotation {a.get('id', f'#{i}')} (image {a.get('image_id')})"
            lacking = [k for k in ("id", "image_id", "category_id", "bbox") if k not in a]
            if lacking:
                self.error(f"{where} lacks {', '.join(lacking)}")
                continue
            if a["id"] in seen:
                self.error(f"duplicate annotation id {a['id']}")
                continue
            seen.add(a["id"])
            image = images.get(a["image_id"])
            if image is None:
                if a["image_id"] in self.rejected_images:  # its image is reported; still check the box
                    self.check_bbox(where, a, None)
                else:
                    self.error(f"{where} points at unknown image {a['image_id']}")
                continue
            if a["category_id"] not in categories:
                self.error(f"{where} has unknown category {a['category_id']}")
                continue
            if self.check_bbox(where, a, image):
                a.setdefault("iscrowd", 0)
                if not _is_number(a.get("area")) or a["area"] <= 0:
                    a["area"] = a["bbox"][2] * a["bbox"][3]

    def check_bbox(self, where: str, a: dict, image: dict | None) -> bool:
        """Four finite numbers, positive size, inside ``image`` (unchecked when None)."""
        b = a["bbox"]
        if not _is_box(b):
            self.error(f"{where} has bbox {b!r}: need four finite numbers [x, y, w, h]")
            return False
        x, y, w, h = b
        if w <= 0 or h <= 0:
            self.error(f"{where} has width {w:g} and height {h:g}: both must be > 0")
            return False
        if image is None:
            return True
        W, H = image["width"], image["height"]
        eps = 1e-6
        if x >= -eps and y >= -eps and x + w <= W + eps and y + h <= H + eps:
            return True
        if self.out_of_bounds == "error":
            self.error(f"{where} has bbox [{x:g}, {y:g}, {w:g}, {h:g}] outside the {W}x{H} image (use clip to clip it)")
            return False
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 <= x0 or y1 <= y0:
            self.error(f"{where} has bbox [{x:g}, {y:g}, {w:g}, {h:g}] entirely outside the {W}x{H} image")
            return False
        a["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        a["area"] = (x1 - x0) * (y1 - y0)
        self.clipped += 1
        return True

    def collect_warnings(self, data):
        with_boxes = {a["image_id"] for a in data["annotations"]}
        empty = [im["id"] for im in data["images"] if im["id"] not in with_boxes]
        if empty:
            self.warnings.append(f"{len(empty)} image(s) without annotations (kept as negatives), e.g. ids {empty[:5]}")
        used = Counter(a["category_id"] for a in data["annotations"])
        unused = [c["name"] for c in data["categories"] if not used[c["id"]]]
        if unused:
            self.warnings.append(f"categories without boxes: {', '.join(unused)}")
        crowd = [a["id"] for a in data["annotations"] if a.get("iscrowd")]
        if crowd:
            self.warnings.append(f"{len(crowd)} iscrowd box(es) kept: ignored by COCO evaluation, left out of YOLO labels, e.g. ids {crowd[:5]}")
        if self.clipped:
            self.warnings.append(f"{self.clipped} box(es) reaching outside their image were clipped to it")
