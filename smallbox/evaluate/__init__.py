"""Evaluation stage: COCO AP by size, prediction files, and what is built on them."""

from .cocoeval import METRIC_KEYS, evaluate
from .predictions import load_predictions, write_json_atomic

__all__ = ["METRIC_KEYS", "evaluate", "load_predictions", "write_json_atomic"]
