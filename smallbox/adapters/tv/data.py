"""COCO json straight into torchvision detection targets, with albumentations' bbox-aware
augmentation. No YOLO conversion on this path.

Labels: category ids in ascending order are labels ``1..K`` (0 is torchvision's background), so
``label - 1`` is the class index of the competition CSV and of the YOLO path.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ...datasets import CocoDataset
from ...datasets.boxes import xywh_abs_to_xyxy_abs
from ...errors import SmallboxError
from .losses import TARGET_AREA_KEY


def filter_by_area(coco: CocoDataset, area_range, keep_empty: bool) -> CocoDataset:
    """Keep only boxes whose area ``w*h`` (original px²) lies in ``[lo, hi)`` -- the bucket rule of
    :class:`SizeBuckets` -- and, unless ``keep_empty``, only images that still have a box."""
    if area_range is None:
        return coco
    lo, hi = (float(v) for v in area_range)
    anns = [a for a in coco.annotations if lo <= a["bbox"][2] * a["bbox"][3] < hi]
    data = dict(coco.data, annotations=anns)
    if not keep_empty:
        with_boxes = {a["image_id"] for a in anns}
        data["images"] = [im for im in coco.images if im["id"] in with_boxes]
    if not data["images"]:
        raise SmallboxError(f"{coco.path}: no image has a box with area in [{lo:g}, {hi:g}) px²")
    return CocoDataset(coco.path, data, coco.image_root)


def build_augmentation(aug: dict, train: bool):
    """albumentations pipeline on ``pascal_voc`` (xyxy_abs) boxes; ``None`` when there is nothing
    to do. The model's own transform resizes to ``min_size/max_size`` afterwards."""
    if not train:
        return None
    # albumentations asks PyPI for a newer version at import: never, we run offline.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    steps = []
    if aug["letterbox"]:
        size = int(aug["letterbox"])
        steps += [A.LongestMaxSize(max_size=size),
                  A.PadIfNeeded(size, size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=114)]
    if aug["hflip"]:
        steps.append(A.HorizontalFlip(p=float(aug["hflip"])))
    if aug["vflip"]:
        steps.append(A.VerticalFlip(p=float(aug["vflip"])))
    if not steps:
        return None
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels", "orig_areas"],
                               min_visibility=float(aug["min_visibility"]), min_area=float(aug["min_area"]))
    return A.Compose(steps, bbox_params=bbox_params)


class CocoDetection(Dataset):
    """``(image Tensor[3, H, W] float 0..1, target)`` per image of a COCO dataset.

    ``target``: ``boxes`` Tensor[N, 4] xyxy_abs (float32), ``labels`` Tensor[N] int64 (1..K),
    ``orig_area`` Tensor[N] (the json ``area`` the evaluator buckets by, ``w*h`` of the bbox
    where the json has none: px² of the ORIGINAL image, whatever the augmentation does -- the
    size bucket of the object), ``image_id`` int (the original id).
    Crowd boxes are left out, as in the YOLO export.
    """

    def __init__(self, coco: CocoDataset, category_ids: list[int], transform=None, image_files: dict | None = None):
        self.coco = coco
        self.transform = transform
        self.image_files = image_files  # {image id: path} where file_name is not relative to the image root
        self.label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}
        self.by_image = coco.annotations_by_image()

    def __len__(self) -> int:
        return len(self.coco.images)

    def load_image(self, index: int) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB."""
        image = self.coco.images[index]
        path = self.image_files[image["id"]] if self.image_files else self.coco.image_path(image)
        try:
            with Image.open(path) as im:  # EXIF orientation applied, as Ultralytics' cv2.imread does
                return np.array(ImageOps.exif_transpose(im).convert("RGB"))
        except OSError as e:
            raise SmallboxError(f"{path}: cannot read image {image['id']} ({e})") from None

    def __getitem__(self, index: int):
        image = self.coco.images[index]
        pixels = self.load_image(index)
        anns = [a for a in self.by_image[image["id"]] if not a.get("iscrowd", 0)]
        boxes = xywh_abs_to_xyxy_abs([a["bbox"] for a in anns]).astype(np.float32)
        labels = [self.label_of[a["category_id"]] for a in anns]
        areas = [float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns]
        if self.transform is not None:
            out = self.transform(image=pixels, bboxes=boxes, labels=labels, orig_areas=areas)
            pixels, boxes, labels, areas = out["image"], out["bboxes"], out["labels"], out["orig_areas"]
        target = {
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
            TARGET_AREA_KEY: torch.as_tensor(np.asarray(areas, dtype=np.float32).reshape(-1)),
            "image_id": image["id"],
        }
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255)
        return tensor, target


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: albumentations keeps its own generator, which forked
    workers would otherwise all inherit unchanged -- the same flips in every worker, every epoch.
    torch gives each worker a seed that differs per worker and per epoch; use it."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info else None
    if transform is not None:
        transform.set_random_seed(torch.initial_seed() % 2**32)


def collate(batch):
    """Lists of images and targets (torchvision detection models take lists)."""
    return tuple(zip(*batch))
