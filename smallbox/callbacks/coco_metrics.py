"""COCO AP by size inside a training loop, against the ORIGINAL COCO json of the split.

A converted dataset's data.yaml names, in its ``smallbox:`` section, the ground-truth json of
every split and the id maps (file name -> image id, class index -> category id). The validator
collects each image's predictions in original ids and, once per validation, evaluates them with
:func:`smallbox.evaluate.evaluate` (faster-coco-eval; the same numbers as pycocotools).

The numbers become ``results.csv`` columns with fixed names (the same every epoch)::

    coco/AP coco/AP50 coco/AP75 coco/AP_small coco/AP_medium coco/AP_large coco/AR_100
    <set>/AP_<range> ...                                # every other bucket set, e.g. fit/AP_small,
                                                        # aitod/AP_verytiny ... (the data.yaml's sets)

A value of -1 means no ground-truth box falls in that size range (as in pycocotools).

Best-model selection (``best.pt``, early stopping): Ultralytics' own fitness unless a column is
chosen, by the environment variable ``SMALLBOX_FITNESS=coco/AP_small`` or, in data.yaml,
``smallbox: {fitness: fit/AP_small}`` (the variable wins). An Ultralytics argument cannot carry
it: the ``yolo`` CLI rejects unknown keys.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..datasets.buckets import BUCKET_NAMES, SizeBuckets
from ..datasets.coco import CocoDataset, load_coco
from ..datasets.manifest import YoloManifest, dataset_section, load_manifest
from ..errors import SmallboxError
from ..evaluate import evaluate
from ..predictions import to_coco_results

FITNESS_ENV = "SMALLBOX_FITNESS"
COCO_COLUMNS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_100")
BUCKET_COLUMNS = tuple(f"AP_{b}" for b in BUCKET_NAMES)


def metric_columns(buckets: list[SizeBuckets]) -> list[str]:
    """The results.csv column names for these bucket sets (COCO's always first)."""
    cols = [f"coco/{k}" for k in COCO_COLUMNS]
    cols += [f"{b.name}/AP_{n}" for b in buckets if b.name != "coco" for n in b.names]
    return cols


def flatten_metrics(result: dict, buckets: list[SizeBuckets]) -> dict[str, float]:
    """``evaluate()``'s dict -> ``{column: value}`` in :func:`metric_columns` order."""
    cols = {f"coco/{k}": float(result[k]) for k in COCO_COLUMNS}
    for b in buckets:
        if b.name != "coco":
            cols.update({f"{b.name}/AP_{n}": float(result["buckets"][b.name][f"AP_{n}"]) for n in b.names})
    return cols


def fitness_column(data: dict, columns: list[str]) -> str | None:
    """The column chosen for best-model selection, or None for Ultralytics' own fitness."""
    section = dataset_section(data, data.get("yaml_file", "data.yaml"))
    key = os.environ.get(FITNESS_ENV) or (section.fitness if section else None)
    if not key:
        return None
    if key not in columns:
        where = f"${FITNESS_ENV}" if os.environ.get(FITNESS_ENV) else f"{data.get('yaml_file', 'data.yaml')}: smallbox.fitness"
        raise SmallboxError(f"{where}: unknown metric {key!r}; choose one of {', '.join(columns)}")
    return key


def dataset_split(data: dict, split_key: str, manifest: YoloManifest) -> str | None:
    """The manifest split whose images folder data.yaml's ``split_key`` (train/val/test) points at."""
    folder = data.get(split_key)
    if isinstance(folder, (list, tuple)):
        folder = folder[0] if len(folder) == 1 else None
    if not folder:
        return None
    split = manifest.split_of_folder(folder)
    return split if split in manifest.coco else None


class CocoSplitEvaluator:
    """Maps one split's YOLO outputs back to original ids and evaluates them.

    Args:
        manifest: the converted dataset's id maps.
        split: a manifest split name (``val``, ``val-small``, ...).
    """

    def __init__(self, manifest: YoloManifest, split: str):
        self.split = split
        self.buckets = manifest.buckets
        self.category_ids = manifest.category_ids
        self.ids_by_name = manifest.splits[split]
        self.gt: CocoDataset = load_coco(manifest.coco[split], check_files=False)
        self.columns = metric_columns(self.buckets)
        self.max_dets = (manifest.section.max_dets if manifest.section else None) or 100

    @classmethod
    def for_data(cls, data: dict, split_key: str = "val") -> "CocoSplitEvaluator | None":
        """The evaluator of a converted dataset's split, or None for a plain YOLO dataset (whose
        validation then stays Ultralytics' own)."""
        if dataset_section(data, data.get("yaml_file", "data.yaml")) is None:
            return None
        manifest = load_manifest(data)
        split = dataset_split(data, split_key, manifest)
        if split is None:
            return None
        return cls(manifest, split)

    def image_id(self, path) -> int:
        name = Path(path).name
        try:
            return self.ids_by_name[name]
        except KeyError:
            raise SmallboxError(f"{path}: not in split {self.split!r} of the dataset's manifest; convert the dataset again") from None

    def results(self, xyxy_abs, scores, classes, image_id: int) -> list[dict]:
        """COCO results of one image (see :func:`smallbox.predictions.to_coco_results`)."""
        return to_coco_results(xyxy_abs, scores, classes, image_id, self.category_ids)

    def evaluate(self, preds: list[dict], image_ids) -> dict:
        """``evaluate()`` on the images that were seen (all of the split unless some were unreadable)."""
        seen = set(image_ids)
        gt = self.gt if seen == {im["id"] for im in self.gt.images} else self.gt.subset(seen)
        return evaluate(gt, preds, self.buckets, max_dets=self.max_dets)

    def file_names(self, image_ids) -> dict[int, str]:
        """``{image id: file_name in the ground-truth json}`` in the json's order."""
        seen = set(image_ids)
        return {im["id"]: im["file_name"] for im in self.gt.images if im["id"] in seen}


def format_columns(columns: dict[str, float]) -> str:
    """One block of text per validation: COCO's numbers, then AP by size per bucket set."""
    def fmt(v):
        return "   -  " if v < 0 else f"{v:6.3f}"

    head = "  ".join(f"{k} {fmt(columns[f'coco/{k}'])}" for k in ("AP", "AP50", "AP75", "AR_100"))
    lines = [f"COCO (original json): {head}"]
    sets = dict.fromkeys(k.split("/", 1)[0] for k in columns)
    for name in sets:
        parts = [f"{k.split('/AP_', 1)[1]} {fmt(v)}" for k, v in columns.items() if k.startswith(f"{name}/AP_")]
        lines.append(f"  AP by size, {name:<6}: " + "  ".join(parts))
    return "\n".join(lines)
