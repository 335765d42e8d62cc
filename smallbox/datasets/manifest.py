"""What ``smallbox convert`` writes beside the YOLO dataset, and the one place that reads it back:
the ``smallbox:`` section of ``data.yaml`` and ``manifest.json`` (how to come back from file names
and class indices to the original COCO image and category ids).

``data.yaml`` (read by Ultralytics; the ``smallbox`` key is kept and reaches ``trainer.data`` /
``validator.data``)::

    path: /abs/out
    train: images/train
    val: images/val
    nc: 6
    names: {0: open, 1: short, ...}
    smallbox:
      manifest: manifest.json                      # relative to `path`
      coco: {train: annotations/train.json, val: annotations/val.json, ...}   # ground truth, original ids
      buckets: [{name: coco, thresholds: [1024.0, 9216.0]}, {name: fit, thresholds: [...]}]
      area_range: {name: small, min_area: 0, max_area: 1024}   # data-NAME.yaml of a per-area split only
      box_size: {mean_side_px: 29.7, mean_side_rel: 0.046}      # mean sqrt(w*h) of the train boxes, in px and
                                                               # over the image's long side (NWD's constant)
      train_long_side: 640                         # median long side of the training images (or tiles)
      tiles: {size: 320, overlap: 0.2, ...}        # data-tiles.yaml only (smallbox convert --tiles)
      max_dets: 1500                               # detections per image its evaluations count (else 100)
      fitness: fit/AP_small                        # optional, added by the user: best-model metric

``manifest.json``::

    {"version": 1,
     "classes": [{"index": 0, "category_id": 1, "name": "open"}, ...],
     "splits": {"train": {"<file name in images/train>": <image id>, ...}, "val": {...}, ...},
     "tiles": {"train-tiles": {"<tile file>": {"image_id", "file_name", "x", "y", "width", "height"}}}}
                                                   # (with --tiles: each tile's source image and window)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import SmallboxError
from ..fileio import read_json, read_yaml
from .buckets import SizeBuckets

MANIFEST_VERSION = 1
SECTION = "smallbox"
MANIFEST_FILE = "manifest.json"
DATA_YAML_KEYS = ("path", "train", "val", "nc", "names", SECTION)


@dataclass
class DatasetSection:
    """The ``smallbox:`` section of a data.yaml.

    Attributes:
        root: the dataset folder (data.yaml's ``path``); ``manifest`` and ``coco`` are relative to it.
        coco: ``{split: ground-truth json}`` for every split of the dataset (relative paths).
        buckets: size bucket sets, COCO's first.
        area_range: ``{name, min_area, max_area}`` of a per-area split's yaml, else None.
        fitness: the results.csv column that picks best.pt, if the user set one.
        box_size: ``{"mean_side_px", "mean_side_rel"}`` of the train boxes (``sqrt(w*h)``, in
            original px and as a share of the image's long side), or None (an older conversion).
        train_long_side: the median long side of the training images (of the tiles, for a tiled
            dataset): with the training imgsz, the scale the model sees objects at.
        tiles: the tiling of a ``data-tiles.yaml`` (:class:`smallbox.datasets.tiles.TileSpec`): its
            val split is scored on whole images through sliced inference with these tiles.
        max_dets: detections per image and class its evaluations count (None: COCO's 100).
    """

    root: Path
    coco: dict[str, str]
    buckets: list[SizeBuckets]
    manifest: str = MANIFEST_FILE
    area_range: dict | None = None
    fitness: str | None = None
    box_size: dict | None = None
    train_long_side: int | None = None
    tiles: dict | None = None
    max_dets: int | None = None

    def to_dict(self) -> dict:
        out = {"manifest": self.manifest, "coco": dict(self.coco), "buckets": [b.to_dict() for b in self.buckets]}
        if self.box_size is not None:
            out["box_size"] = dict(self.box_size)
        if self.train_long_side is not None:
            out["train_long_side"] = int(self.train_long_side)
        if self.tiles is not None:
            out["tiles"] = dict(self.tiles)
        if self.max_dets is not None:
            out["max_dets"] = int(self.max_dets)
        if self.area_range is not None:
            out["area_range"] = dict(self.area_range)
        if self.fitness:
            out["fitness"] = self.fitness
        return out

    def ground_truth(self, split: str) -> Path | None:
        """Absolute path of a split's ground-truth json (None when the dataset has no such split)."""
        return self.root / self.coco[split] if split in self.coco else None

    def bucket_set(self, name: str) -> SizeBuckets | None:
        return next((b for b in self.buckets if b.name == name), None)


def dataset_section(data: dict, source="data.yaml") -> DatasetSection | None:
    """The ``smallbox:`` section of a parsed data.yaml (Ultralytics' ``trainer.data``, whose
    ``path`` is absolute), or None for a plain YOLO dataset."""
    extra = data.get(SECTION)
    if extra is None:
        return None
    if not isinstance(extra, dict) or "manifest" not in extra:
        raise SmallboxError(f"{source}: the `{SECTION}:` section is not one written by `smallbox convert`")
    try:
        buckets = [SizeBuckets.from_dict(b) for b in extra.get("buckets", [])] or [SizeBuckets.coco()]
    except (KeyError, TypeError) as e:
        raise SmallboxError(f"{source}: {SECTION}.buckets: {e}") from None
    return DatasetSection(Path(str(data.get("path", "."))), dict(extra.get("coco") or {}), buckets,
                          extra["manifest"], extra.get("area_range"), extra.get("fitness"), extra.get("box_size"),
                          extra.get("train_long_side"), extra.get("tiles"), extra.get("max_dets"))


def mean_box_size(dataset) -> dict | None:
    """``{"mean_side_px", "mean_side_rel"}``: the mean of ``sqrt(w*h)`` over the dataset's
    non-crowd boxes, in original px and divided by its image's long side (what the side becomes
    at a network input of 1 px: multiply by imgsz). NWD's constant C is this size (Wang et al.
    2021 set it to the dataset's average absolute object size)."""
    import math

    long_side = {im["id"]: max(im["width"], im["height"]) for im in dataset.images}
    sides = [(math.sqrt(a["bbox"][2] * a["bbox"][3]), long_side[a["image_id"]]) for a in dataset.annotations
             if not a.get("iscrowd") and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    if not sides:
        return None
    return {"mean_side_px": round(sum(s for s, _ in sides) / len(sides), 4),
            "mean_side_rel": round(sum(s / n for s, n in sides) / len(sides), 6)}


@dataclass
class YoloManifest:
    """Id maps of a converted dataset.

    Attributes:
        root: the dataset folder (``path`` of data.yaml).
        classes: ``[{"index", "category_id", "name"}]`` in class-index order.
        splits: ``{split: {file name: COCO image id}}``.
        coco: ``{split: path of the COCO ground truth of that split}`` (absolute).
        buckets: size bucket sets, COCO's first.
        section: the data.yaml section it was read through.
    """

    root: Path
    classes: list[dict]
    splits: dict[str, dict[str, int]]
    coco: dict[str, Path]
    buckets: list[SizeBuckets]
    section: DatasetSection | None = field(default=None, repr=False)

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


def manifest_dict(classes: list[dict], splits: dict[str, dict[str, int]], tiles: dict | None = None,
                  conversion: dict | None = None) -> dict:
    out = {"version": MANIFEST_VERSION, "classes": classes, "splits": splits}
    if tiles:
        out["tiles"] = tiles
    if conversion:
        out["conversion"] = conversion  # the inputs (path + SHA-1) and options: a rerun recognises its own dataset
    return out


def read_data_yaml(path) -> dict:
    return read_yaml(path, "data YAML")


def dump_data_yaml(data: dict) -> str:
    """The text of a data.yaml, keys in Ultralytics' usual order."""
    ordered = {k: data[k] for k in DATA_YAML_KEYS if k in data}
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=1000)


def load_manifest(data) -> YoloManifest:
    """The manifest of a converted dataset, from its data.yaml path or the parsed dict."""
    source = data if isinstance(data, (str, Path)) else data.get("yaml_file", "data.yaml")
    if isinstance(data, (str, Path)):
        data = read_data_yaml(data)
    section = dataset_section(data, source)
    if section is None:
        raise SmallboxError(f"{source}: no `{SECTION}:` section; write the dataset with `smallbox convert`")
    manifest_path = section.root / section.manifest
    m = read_json(manifest_path)
    if not isinstance(m, dict) or m.get("version") != MANIFEST_VERSION:
        raise SmallboxError(f"{manifest_path}: unsupported manifest version {m.get('version') if isinstance(m, dict) else m!r}")
    coco = {split: section.ground_truth(split) for split in section.coco}
    return YoloManifest(section.root, m["classes"], m["splits"], coco, section.buckets, section)


def manifest_of_data_file(data) -> YoloManifest | None:
    """The manifest of the data YAML a model was trained on (kept in its checkpoint), if any."""
    if not data or not str(data).endswith((".yaml", ".yml")) or not Path(str(data)).is_file():
        return None
    try:
        return load_manifest(data)
    except SmallboxError:
        return None


def recorded_fit(gt_path) -> tuple[SizeBuckets, str] | None:
    """The ``fit`` size buckets ``smallbox convert`` recorded (fitted on the train boxes) for the
    dataset whose split ground truth ``gt_path`` is, and where they came from; None unless
    ``gt_path`` is ``DATASET/annotations/<split>.json`` listed by ``DATASET/data.yaml``'s
    ``smallbox:`` section, with ``DATASET/manifest.json`` beside it."""
    gt_path = Path(gt_path)
    root, data_yaml = gt_path.parent.parent, gt_path.parent.parent / "data.yaml"
    if gt_path.parent.name != "annotations" or not (root / MANIFEST_FILE).is_file() or not data_yaml.is_file():
        return None
    section = dataset_section(read_data_yaml(data_yaml), data_yaml)
    if section is None or f"annotations/{gt_path.name}" not in section.coco.values():
        return None
    fit = section.bucket_set("fit")
    if fit is None:
        return None
    return fit, f"recorded by smallbox convert in {data_yaml}, fitted on the dataset's train boxes"


def fit_buckets(gt_path, areas) -> tuple[SizeBuckets, str]:
    """One definition of a dataset's ``fit`` buckets for every command: those recorded at convert
    when ``gt_path`` belongs to a converted dataset, else fitted on ``areas`` (the boxes of
    ``gt_path``). Returns the buckets and where they came from, for the user to read."""
    return recorded_fit(gt_path) or (SizeBuckets.fit(areas), f"fitted on the boxes of {gt_path}")


def size_buckets(spec: str, gt_path, areas) -> tuple[SizeBuckets, str | None]:
    """What a command's ``--areas SPEC`` means for the ground truth ``gt_path``: ``fit`` is
    :func:`fit_buckets` (with where the numbers came from), anything else
    :meth:`SizeBuckets.parse` (no source to tell)."""
    if str(spec).strip() == "fit":
        return fit_buckets(gt_path, areas)
    return SizeBuckets.parse(spec, areas), None


def write_manifest_text(classes: list[dict], splits: dict, tiles: dict | None = None, conversion: dict | None = None) -> str:
    return json.dumps(manifest_dict(classes, splits, tiles, conversion), sort_keys=True, indent=1)
