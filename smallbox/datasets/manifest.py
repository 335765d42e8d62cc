"""The manifest written by ``smallbox convert`` beside ``data.yaml``: how to come back from a
YOLO dataset (file names, class indices) to the original COCO image and category ids.

``data.yaml`` (read by Ultralytics; the ``smallbox`` key is kept and reaches
``trainer.data`` / ``validator.data``)::

    path: /abs/out
    train: images/train
    val: images/val
    nc: 6
    names: {0: open, 1: short, ...}
    smallbox:
      manifest: manifest.json                      # relative to `path`
      coco: {train: annotations/train.json, val: annotations/val.json}   # ground truth, original ids
      buckets: [{name: coco, thresholds: [1024.0, 9216.0]}, {name: fit, thresholds: [...]}]

``manifest.json``::

    {"version": 1,
     "classes": [{"index": 0, "category_id": 1, "name": "open"}, ...],
     "splits": {"train": {"<file name in images/train>": <image id>, ...}, "val": {...}, ...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .buckets import SizeBuckets
from .errors import SmallboxError

MANIFEST_VERSION = 1


@dataclass
class YoloManifest:
    """Id maps of a converted dataset.

    Attributes:
        root: the dataset folder (``path`` of data.yaml).
        classes: ``[{"index", "category_id", "name"}]`` in class-index order.
        splits: ``{split: {file name: COCO image id}}``.
        coco: ``{split: path of the COCO ground truth of that split}`` (absolute).
        buckets: size bucket sets, COCO's first.
    """

    root: Path
    classes: list[dict]
    splits: dict[str, dict[str, int]]
    coco: dict[str, Path]
    buckets: list[SizeBuckets]

    @property
    def category_ids(self) -> list[int]:
        """``category_ids[class index]`` is the COCO category id."""
        return [c["category_id"] for c in self.classes]

    def class_index(self) -> dict[int, int]:
        return {c["category_id"]: c["index"] for c in self.classes}

    def image_ids_by_stem(self, split: str) -> dict[str, int]:
        """``{file stem: image id}``: Ultralytics names images by their stem."""
        return {Path(name).stem: image_id for name, image_id in self.splits[split].items()}

    def split_of_folder(self, folder) -> str | None:
        """Which split an images folder (``.../images/<split>``) holds."""
        name = Path(folder).name
        return name if name in self.splits else None


def read_data_yaml(path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SmallboxError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise SmallboxError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise SmallboxError(f"{path}: expected a mapping")
    return data


def load_manifest(data) -> YoloManifest:
    """The manifest of a converted dataset, from its data.yaml path or the parsed dict
    (Ultralytics' ``trainer.data``, whose ``path`` is absolute)."""
    source = data if isinstance(data, (str, Path)) else "data.yaml"
    if isinstance(data, (str, Path)):
        data = read_data_yaml(data)
    extra = data.get("smallbox")
    if not isinstance(extra, dict) or "manifest" not in extra:
        raise SmallboxError(f"{source}: no `smallbox:` section; write the dataset with `smallbox convert`")
    root = Path(data["path"])
    manifest_path = root / extra["manifest"]
    try:
        m = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SmallboxError(f"{manifest_path}: manifest not found") from None
    if m.get("version") != MANIFEST_VERSION:
        raise SmallboxError(f"{manifest_path}: unsupported manifest version {m.get('version')}")
    buckets = [SizeBuckets.from_dict(b) for b in extra.get("buckets", [])] or [SizeBuckets.coco()]
    coco = {split: root / p for split, p in extra.get("coco", {}).items()}
    return YoloManifest(root, m["classes"], m["splits"], coco, buckets)
