"""The run folder: what a training run of either path (``smallbox yolo train``, ``smallbox tv
train``) writes, and what ``smallbox report`` and the experiment ledger read. One owner, so a key
added here reaches every writer and reader::

    RUN/
      results.csv       one row per epoch; metric columns coco/AP ... coco/AR_100, <set>/AP_small ...
                        (smallbox.callbacks.coco_metrics.metric_columns)
      smallbox.json     RunInfo below
      predictions.json  COCO results of the best model on the val split, ORIGINAL ids
      weights/best.pt   (YOLO; best.pt at the top for the torchvision path)
      args.yaml | recipe.yaml   the path's own settings

``smallbox.json`` keys: ``path`` (``yolo`` | ``tv``), ``model``, ``backbone``, ``imgsz``,
``backbone_weights`` (the local file the backbone started from, or "random init"),
``epochs``, ``seed``, ``data`` (absolute path of the data YAML or train json), ``val`` (absolute
path of the ground-truth json the val metrics and ``predictions.json`` are scored against; for a
per-area specialist, its per-area val json), ``buckets`` (``[{name, thresholds}]``),
``predictions`` (file name or null), ``evaluation`` (the settings behind the predictions: conf,
iou, max_det, imgsz, ...), ``best`` (``{metric, value, epoch}`` where known).
"""

from __future__ import annotations

from pathlib import Path

from .errors import SmallboxError
from .fileio import read_json, read_yaml, write_json_atomic

RESULTS_CSV = "results.csv"
RUN_INFO = "smallbox.json"
PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_CSV = "predictions.csv"
COCO_METRICS_JSON = "coco_metrics.json"
ULTRALYTICS_ARGS = "args.yaml"
TV_RECIPE = "recipe.yaml"
MISSING = "-"
RUN_INFO_KEYS = ("path", "model", "backbone", "backbone_weights", "imgsz", "epochs", "seed", "data", "val", "buckets",
                 "predictions", "evaluation", "best")


def write_run_info(folder, info: dict) -> Path:
    """Write ``smallbox.json``; every key of :data:`RUN_INFO_KEYS` is present (None when unknown)
    and paths are absolute, so a report run from any folder finds the ground truth."""
    unknown = set(info) - set(RUN_INFO_KEYS)
    if unknown:
        raise ValueError(f"smallbox.json: unknown keys {sorted(unknown)}")
    out = {k: info.get(k) for k in RUN_INFO_KEYS}
    for key in ("data", "val"):
        if out[key]:
            out[key] = str(Path(out[key]).absolute())
    return write_json_atomic(out, Path(folder) / RUN_INFO, indent=1)


def is_run_folder(folder) -> bool:
    """A training run: it has a results.csv and a smallbox.json or Ultralytics' args.yaml. A
    ``val`` or ``predict`` folder of Ultralytics has args.yaml but no results.csv."""
    folder = Path(folder)
    return (folder / RESULTS_CSV).is_file() and ((folder / RUN_INFO).is_file() or (folder / ULTRALYTICS_ARGS).is_file())


def read_run_info(folder) -> dict:
    """``smallbox.json``, completed from Ultralytics' ``args.yaml`` where it lacks a key (a plain
    Ultralytics run has only the latter). Relative paths of older files are taken from the folder."""
    folder = Path(folder)
    info = {}
    if (folder / RUN_INFO).is_file():
        info = read_json(folder / RUN_INFO)
        if not isinstance(info, dict):
            raise SmallboxError(f"{folder / RUN_INFO}: expected a json object")
    ua = read_settings_file(folder / ULTRALYTICS_ARGS)
    if ua:
        defaults = {"path": "yolo", "model": Path(str(ua.get("model", MISSING))).stem, "imgsz": ua.get("imgsz"),
                    "epochs": ua.get("epochs"), "seed": ua.get("seed"), "data": ua.get("data")}
        info = {**{k: v for k, v in defaults.items() if v is not None}, **{k: v for k, v in info.items() if v is not None}}
    if not info:
        raise SmallboxError(f"{folder}: neither {RUN_INFO} nor {ULTRALYTICS_ARGS}: not a training run folder")
    info.setdefault("backbone", MISSING)
    return info


def resolve_path(folder, value) -> Path | None:
    """A path written in a run's files: absolute, or relative to the folder, else to the current one."""
    if not value:
        return None
    path = Path(str(value))
    if path.is_absolute():
        return path
    inside = Path(folder) / path
    return inside if inside.exists() else path


def read_settings_file(path) -> dict:
    """A run's ``args.yaml`` / ``recipe.yaml`` as a dict ({} when absent)."""
    path = Path(path)
    return read_yaml(path, "settings file", empty={}) if path.is_file() else {}
