"""Datasets stage: load and validate COCO json, size buckets, EDA, conversion to YOLO format.
Imports nothing else of smallbox."""

from .buckets import SizeBuckets
from .coco import CocoDataset, load_coco
from .errors import SmallboxError

__all__ = ["CocoDataset", "SizeBuckets", "SmallboxError", "load_coco"]
