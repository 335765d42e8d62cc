"""Datasets stage: load and validate COCO json, size buckets, EDA, conversion to YOLO format.
Imports nothing of smallbox but its errors and file helpers."""

from .buckets import SizeBuckets
from .coco import CocoDataset, load_coco

__all__ = ["CocoDataset", "SizeBuckets", "load_coco"]
