"""Which ground truth a run was scored against, and on which one two groups of runs can be compared.

A run's ``smallbox.json`` names its val ground truth (``val``: for a specialist trained on a
per-area split, its per-area json such as ``val-small.json``). Ground truths are told apart by
what they hold (images, boxes, categories), not by their path: the same json reached by two paths,
or copied by ``smallbox convert``, is one ground truth. Two groups are compared on a ground truth
both were scored on; when one group's is a per-area subset of the other's boxes on the same
images (a specialist's ``val-small.json`` beside the full ``val.json``), both are re-scored on the
full one, which both sets of predictions cover.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..datasets.coco import CocoDataset, load_coco
from ..datasets.manifest import dataset_section, read_data_yaml
from ..errors import SmallboxError
from ..runfolder import resolve_path


def run_ground_truth(folder, info: dict) -> Path | None:
    """The val ground truth of a run: ``smallbox.json``'s ``val``, else its ``data`` (a COCO json,
    or a converted dataset's data.yaml: the val split of that yaml, per-area for a data-NAME.yaml).
    Relative paths (older files) are taken from the run folder, else from the current one."""
    val = resolve_path(folder, info.get("val"))
    if val is not None and val.is_file():
        return val
    data = resolve_path(folder, info.get("data"))
    if data is None or not data.is_file():
        return None
    if data.suffix in (".json", ".gz"):
        return data
    if data.suffix not in (".yaml", ".yml"):
        return None
    try:
        section = dataset_section(read_data_yaml(data), data)
    except SmallboxError:
        return None
    if section is None:
        return None
    split = f"val-{section.area_range['name']}" if section.area_range else "val"
    path = section.ground_truth(split)
    return path if path is not None and path.is_file() else None


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _images(gt: CocoDataset) -> list:
    return sorted((im["id"], str(im.get("file_name")), im.get("width"), im.get("height")) for im in gt.images)


def _boxes(gt: CocoDataset) -> Counter:
    return Counter((a["image_id"], a["category_id"], tuple(a["bbox"]), a.get("area"), int(a.get("iscrowd", 0)))
                   for a in gt.annotations)


def _categories(gt: CocoDataset) -> list:
    return sorted((c["id"], c.get("name")) for c in gt.categories)


@dataclass
class GroundTruth:
    """A loaded ground truth and its content key (images, boxes, categories: what scoring reads)."""

    path: Path
    dataset: CocoDataset
    key: str

    @property
    def short(self) -> str:
        return f"{self.path.name} #{self.key[:8]}"

    def describe(self) -> str:
        return f"{self.path.name} ({len(self.dataset.images)} images, {len(self.dataset.annotations)} boxes, #{self.key[:8]})"


class GroundTruths:
    """Ground truths loaded once each (by resolved path) and compared by content."""

    def __init__(self):
        self.loaded: dict[Path, GroundTruth] = {}

    def load(self, path) -> GroundTruth:
        path = Path(path)
        key = path.resolve()
        if key not in self.loaded:
            gt = load_coco(path, check_files=False)
            content = [_images(gt), sorted(_boxes(gt).elements()), _categories(gt)]
            self.loaded[key] = GroundTruth(path, gt, _digest(content))
        return self.loaded[key]


def shared_ground_truth(a: GroundTruth, b: GroundTruth) -> tuple[GroundTruth | None, str]:
    """The ground truth to compare A and B on, and a note; ``(None, why not)`` when there is none.

    Same content: A's. The same images and categories with one side's boxes a subset of the
    other's (a per-area split): the fuller one, on which both sets of predictions can be scored.
    """
    if a.key == b.key:
        return a, "" if a.path.resolve() == b.path.resolve() else f"{a.path.name} and {b.path} hold the same ground truth"
    if _images(a.dataset) != _images(b.dataset) or _categories(a.dataset) != _categories(b.dataset):
        return None, (f"different test sets: {a.describe()} vs {b.describe()}; score both on one val set "
                      "(smallbox yolo val / smallbox tv eval) to compare them")
    boxes_a, boxes_b = _boxes(a.dataset), _boxes(b.dataset)
    if not boxes_b - boxes_a:
        return a, f"B was scored on {b.path.name}, a subset of the boxes of {a.path.name} on the same images: both re-scored on {a.path.name}"
    if not boxes_a - boxes_b:
        return b, f"A was scored on {a.path.name}, a subset of the boxes of {b.path.name} on the same images: both re-scored on {b.path.name}"
    return None, f"the same images with different boxes ({a.describe()} vs {b.describe()}): no ground truth both were scored on"
