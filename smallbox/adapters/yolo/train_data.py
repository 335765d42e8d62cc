"""Training batches whose boxes carry their ORIGINAL area (the json ``area`` the evaluator
buckets by) through Ultralytics' augmentation, so that the size-weighted loss (:mod:`.loss`)
weights every box by the evaluator's own bucket, whatever mosaic, random scale, flips, letterbox
or rect batches did to it.

How the area travels: from the moment an image's labels are read (``update_labels_info``, which
the other tiles of a mosaic go through too) each box's area rides as a second column of
``labels["cls"]``. Every Ultralytics transform that drops, reorders or concatenates boxes
(Mosaic's concatenation and zero-area filter, RandomPerspective's ``box_candidates``, CopyPaste,
MixUp, CutMix) indexes ``cls`` with the boxes' own masks; flips and LetterBox leave it alone. At
the end of the transforms (``__getitem__``) the column is split off into ``orig_area``, so the
loss, Ultralytics' metrics and its plots see ``cls`` as ``(N, 1)``, as always. A transform that
rebuilds ``cls`` (Ultralytics' spatial albumentations: ``cls[i].reshape(-1, 1)``) is caught there.

Where the area comes from, per training image: ``smallbox convert`` wrote the image under a file
name that manifest.json maps to its image id, and ``annotations/<split>.json`` holds its
annotations with their ``area``. Each label row is matched to the annotation of the same image
and class whose box is nearest (at most ``MATCH_TOLERANCE_PX`` off on every side), as soon as
Ultralytics has read the labels: robust to the label files' ``%g`` rounding and to exact duplicate
rows dropped by convert and by Ultralytics (which may reorder the rest); ``classes=`` then filters
the areas with the boxes' mask, and rect batches reorder whole label dicts. A row without a match,
and every row of a plain YOLO dataset (no ``smallbox:`` section), gets ``w*h`` of its label box in
its image's pixels -- the same number wherever the json's ``area`` is the box's -- and the log
says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import get_split_fraction
from ultralytics.utils import LOGGER, colorstr

from ...datasets.manifest import dataset_section, load_manifest
from ...errors import SmallboxError
from ...fileio import read_json

AREA_KEY = "orig_area"  # batch["orig_area"]: Tensor[N] float64, px² of the original image, one per batch["cls"] row
MATCH_TOLERANCE_PX = 0.5


class OriginalAreaDataset(YOLODataset):
    """``YOLODataset`` whose samples carry ``orig_area`` (``Tensor[N]``, float64), aligned with
    ``cls`` / ``bboxes``, and whose batches carry it concatenated like ``cls``. Same arguments as
    ``YOLODataset``."""

    def get_labels(self) -> list[dict]:
        """Ultralytics' labels, each with ``orig_area`` ``[N]`` (looked up as read, before
        ``classes=`` / ``single_cls`` change them and rect batches reorder them)."""
        labels = super().get_labels()
        areas, note = original_areas(labels, self.data, self.img_path)
        for label, area in zip(labels, areas):
            label[AREA_KEY] = area
        LOGGER.info(f"{self.prefix}smallbox size weighting: {note}")
        return labels

    def update_labels(self, include_class) -> None:
        if include_class is not None:  # the mask Ultralytics applies to cls and bboxes
            keep = np.array(include_class).reshape(1, -1)
            for label in self.labels:
                label[AREA_KEY] = label[AREA_KEY][(label["cls"] == keep).any(1)]
        super().update_labels(include_class)

    def build_transforms(self, hyp):
        transforms = super().build_transforms(hyp)
        if any(getattr(t, "contains_spatial", False) for t in transforms.transforms):
            raise SmallboxError("augmentations: spatial albumentations transforms rebuild each box's class and cannot carry "
                                "its original area; drop them, or weight by the size the network sees (size_weighting by: input)")
        return transforms

    def update_labels_info(self, label: dict) -> dict:
        area = label.pop(AREA_KEY)
        label = super().update_labels_info(label)
        label["cls"] = np.concatenate([label["cls"].astype(np.float64), area.reshape(-1, 1)], axis=1)
        return label

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        cls, n = sample["cls"], len(sample["bboxes"])
        if n == 0:  # Format writes an empty image's cls as zeros(0, 1)
            sample["cls"], sample[AREA_KEY] = cls.reshape(0, 1).float(), torch.zeros(0, dtype=torch.float64)
        elif cls.shape != (n, 2):  # a transform rebuilt cls: the areas no longer follow their boxes
            raise SmallboxError(f"{self.im_files[index]}: a training transform rebuilt labels['cls'] ({tuple(cls.shape)} "
                                f"for {n} boxes) and lost each box's original area (size_weighting by: original)")
        else:
            sample["cls"], sample[AREA_KEY] = cls[:, :1].float(), cls[:, 1].clone()
        return sample

    @staticmethod
    def collate_fn(batch: list[dict]) -> dict:
        new_batch = YOLODataset.collate_fn(batch)
        new_batch[AREA_KEY] = torch.cat(new_batch[AREA_KEY], 0)
        return new_batch


def build_original_area_dataset(cfg, img_path, batch: int, data: dict, stride: int = 32) -> OriginalAreaDataset:
    """The training dataset ``build_yolo_dataset(cfg, img_path, batch, data, mode="train")`` would
    build for a detection task, as an :class:`OriginalAreaDataset`."""
    fraction = 1.0 if data.get("complete") else get_split_fraction(cfg.fraction, "train")
    return OriginalAreaDataset(
        img_path=img_path, imgsz=cfg.imgsz, batch_size=batch, augment=True, hyp=cfg, rect=cfg.rect,
        cache=cfg.cache or None, single_cls=cfg.single_cls or False, stride=int(stride), pad=0.0,
        prefix=colorstr("train: "), task=cfg.task, classes=cfg.classes, data=data, fraction=fraction)


def original_areas(labels: list[dict], data: dict, img_path) -> tuple[list[np.ndarray], str]:
    """Each label row's original area, ``[N_i]`` float64 per label of ``labels`` (Ultralytics'
    label dicts as read: ``im_file``, ``cls`` ``(N, 1)``, ``bboxes`` ``(N, 4)`` xywh_norm,
    ``shape`` (h, w)), and a sentence for the log saying where they came from.

    ``data`` is the parsed data.yaml (``trainer.data``); ``img_path`` the images folder of ``labels``.
    """
    label_wh = [_label_area(lb) for lb in labels]
    source = _ground_truth(data, img_path)
    if isinstance(source, str):
        return label_wh, f"{source}: each box's original area is w*h of its label box in its image's pixels"
    gt_path, by_stem = source
    areas, unmatched = [], 0
    for lb, fallback in zip(labels, label_wh):
        image = by_stem.get(Path(lb["im_file"]).stem)
        area, ok = match_areas(lb["cls"], lb["bboxes"], image) if image else (fallback, np.zeros(len(fallback), bool))
        areas.append(np.where(ok, area, fallback))
        unmatched += int((~ok).sum())
    total = sum(len(a) for a in areas)
    note = f"{total - unmatched} of {total} boxes carry the `area` of their annotation in {gt_path} (the evaluator's bucket)"
    if unmatched:
        LOGGER.warning(f"smallbox size weighting: {unmatched} label rows of {img_path} match no annotation of {gt_path} "
                       f"within {MATCH_TOLERANCE_PX} px: their original area is w*h of the label box")
    return areas, note


def match_areas(cls, xywh_norm, image: dict) -> tuple[np.ndarray, np.ndarray]:
    """For each label row, the ``area`` of the nearest annotation of ``image`` of the same class
    and whether it lies within ``MATCH_TOLERANCE_PX`` on every side.

    Args:
        cls (N, 1), xywh_norm (N, 4): the label rows (cxcywh_norm).
        image (dict): ``width``, ``height`` and ``boxes`` ``(M, 4)`` cxcywh_norm, ``classes``
            ``(M,)``, ``areas`` ``(M,)`` of its non-crowd annotations, in annotation order.
    Returns:
        areas ``(N,)`` float64, matched ``(N,)`` bool. On ties the first annotation wins, as
        convert keeps the first of exact duplicates.
    """
    n, m = len(xywh_norm), len(image["areas"])
    if n == 0 or m == 0:
        return np.zeros(n), np.zeros(n, bool)
    size = np.array([image["width"], image["height"]] * 2, dtype=np.float64)
    rows = np.asarray(xywh_norm, dtype=np.float64)
    off_px = (np.abs(rows[:, None, :] - image["boxes"][None, :, :]) * size).max(-1)  # (N, M)
    off_px[np.asarray(cls).reshape(-1, 1) != image["classes"].reshape(1, -1)] = np.inf
    nearest = off_px.argmin(1)
    return image["areas"][nearest], off_px[np.arange(n), nearest] <= MATCH_TOLERANCE_PX


def _label_area(label: dict) -> np.ndarray:
    """``w*h`` of each label box in its image's pixels (``shape`` is (h, w) as Ultralytics loads it)."""
    h, w = label["shape"]
    boxes = np.asarray(label["bboxes"], dtype=np.float64).reshape(-1, 4)
    return boxes[:, 2] * w * boxes[:, 3] * h


def _ground_truth(data: dict, img_path) -> tuple[Path, dict[str, dict]] | str:
    """``(json path, {file stem: image})`` of the converted split whose images are ``img_path``
    (``image`` as :func:`match_areas` takes it), or why there is none."""
    source = data.get("yaml_file", "data.yaml")
    if dataset_section(data, source) is None:
        return f"{source} has no `smallbox:` section (not written by smallbox convert)"
    manifest = load_manifest(data)
    split = manifest.split_of_folder(img_path) if isinstance(img_path, (str, Path)) else None
    if split is None or manifest.coco.get(split) is None or not manifest.coco[split].is_file():
        return f"{img_path} is not a split folder of {source} with a ground-truth json"
    gt_path = manifest.coco[split]
    gt = read_json(gt_path)
    class_index = manifest.class_index()
    anns: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            anns.setdefault(a["image_id"], []).append(a)
    images = {im["id"]: im for im in gt["images"]}
    by_stem = {}
    for stem, image_id in manifest.image_ids_by_stem(split).items():
        im, rows = images[image_id], anns.get(image_id, [])
        xywh = np.array([a["bbox"] for a in rows], dtype=np.float64).reshape(-1, 4)
        wh = np.array([im["width"], im["height"]] * 2, dtype=np.float64)
        by_stem[stem] = {
            "width": im["width"], "height": im["height"],
            "boxes": np.concatenate([xywh[:, :2] + xywh[:, 2:] / 2, xywh[:, 2:]], axis=1) / wh,  # cxcywh_norm
            "classes": np.array([class_index[a["category_id"]] for a in rows], dtype=np.float64),
            # the evaluator's area; w*h of the bbox where the json has none
            "areas": np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in rows], dtype=np.float64),
        }
    return gt_path, by_stem
