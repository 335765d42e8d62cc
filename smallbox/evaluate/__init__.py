"""Evaluation stage: COCO AP / AR by size (pycocotools' numbers) and the per-image matching that
resampling builds on."""

from .cocoeval import METRIC_KEYS, evaluate

__all__ = ["METRIC_KEYS", "evaluate"]
