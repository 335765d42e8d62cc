"""Prediction files: the one owner of COCO results (``.json`` / ``.json.gz``) and the
competition CSV, their validation, the image-id and category-id rule of every command that
predicts, and the detections -> COCO results conversion (one rounding rule)."""

from .competition import read_competition_csv, to_competition_csv, write_competition_csv
from .files import load_predictions, read_prediction_file, write_predictions
from .images import (IMAGE_IDS_ENV, IMAGES_JSON, ImageIndex, default_category_ids, index_folder, index_from_coco,
                     write_images_json)
from .results import to_coco_results

__all__ = ["IMAGES_JSON", "IMAGE_IDS_ENV", "ImageIndex", "default_category_ids", "index_folder", "index_from_coco",
           "load_predictions", "read_competition_csv", "read_prediction_file", "to_coco_results", "to_competition_csv", "write_competition_csv",
           "write_images_json", "write_predictions"]
