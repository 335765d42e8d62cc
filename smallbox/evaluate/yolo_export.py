"""Prediction exports of a YOLO model (numpy in, files out; no Ultralytics import here).

A run folder gets ``predictions.json`` (COCO results with the ORIGINAL image and category ids:
what ``smallbox eval`` and ensembling read) and ``predictions.csv`` (the competition format,
``PredictionString,image_id``).

Image ids of a prediction run, first match wins:
1. a COCO json naming the images (``SMALLBOX_IMAGE_IDS=test.json``; matched by file name);
2. the converted dataset the model was trained on (its manifest knows every split's files);
3. otherwise the file names sorted: ids ``1..N`` in that order, written to ``images.json``
   (a COCO json with ``images`` and ``categories``) beside the predictions so they can be
   evaluated or ensembled later.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..datasets.boxes import xyxy_abs_to_xywh_abs
from ..datasets.coco import read_json
from ..datasets.errors import SmallboxError
from .export import write_competition_csv, write_text_atomic
from .predictions import write_json_atomic

IMAGE_IDS_ENV = "SMALLBOX_IMAGE_IDS"
PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_CSV = "predictions.csv"
IMAGES_JSON = "images.json"


def to_coco_results(xyxy_abs, scores, classes, image_id: int, category_ids: list[int]) -> list[dict]:
    """COCO results of one image.

    Args:
        xyxy_abs: boxes ``[N, 4]`` in original-image pixels.
        scores: ``[N]`` confidences.
        classes: ``[N]`` class indices (model outputs).
        image_id: the image's COCO id.
        category_ids: ``category_ids[class index]`` is the COCO category id.
    Returns:
        list[dict]: ``{"image_id", "category_id", "bbox": xywh_abs, "score"}``, rounded as Ultralytics
        rounds its own json (boxes to 1/1000 px, scores to 5 decimals); the list kept in memory and
        the file written from it hold the same numbers.
    """
    # Vectorised: this runs on every image of every validation epoch.
    boxes = np.round(xyxy_abs_to_xywh_abs(xyxy_abs), 3).tolist()
    scores = np.round(np.asarray(scores, dtype=np.float64).reshape(-1), 5).tolist()
    cats = np.asarray(category_ids)[np.asarray(classes).reshape(-1).astype(int)].tolist()
    return [{"image_id": image_id, "category_id": c, "bbox": b, "score": s} for b, s, c in zip(boxes, scores, cats)]


def write_predictions(preds: list[dict], out_dir, file_names: dict[int, str], category_ids: list[int]) -> tuple[Path, Path]:
    """Write ``predictions.json`` and ``predictions.csv`` into ``out_dir`` (each atomically).

    Args:
        file_names: ``{image id: file name}``: the CSV's rows, one per image, in this order.
        category_ids: ``category_ids[label]``; the CSV's label is the position of the category
            id in ascending order.
    """
    out_dir = Path(out_dir)
    class_index = {cid: i for i, cid in enumerate(sorted(category_ids))}
    # json.dumps uses the C encoder; json.dump (streaming to a file) is several times slower.
    json_path = write_text_atomic(json.dumps(preds), out_dir / PREDICTIONS_JSON)
    csv_path = write_competition_csv(preds, out_dir / PREDICTIONS_CSV, file_names, class_index)
    return json_path, csv_path


def image_ids_from_json(path) -> dict[str, tuple[int, str]]:
    """``{base name: (image id, file_name as written in the json)}`` of a COCO json's images."""
    data = read_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise SmallboxError(f"{path}: expected a COCO json with an `images` list")
    by_name: dict[str, tuple[int, str]] = {}
    for im in images:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise SmallboxError(f"{path}: image {im!r} needs id and file_name"[:200])
        name = Path(str(im["file_name"]).replace("\\", "/")).name
        if name in by_name:
            raise SmallboxError(f"{path}: images {by_name[name][0]} and {im['id']} share the file name {name!r}")
        by_name[name] = (im["id"], im["file_name"])
    return by_name


def assign_image_ids(paths: list[str], ids_json=None, known: dict[str, int] | None = None):
    """Image ids of predicted files.

    Args:
        paths: the image files, in any order.
        ids_json: a COCO json naming them (``SMALLBOX_IMAGE_IDS`` when None); every file must be in it.
        known: ``{file name: id}`` from a converted dataset's manifest; used when it has every file.
    Returns:
        tuple: ``({path: image id}, {image id: file name for the CSV}, source)`` where ``source`` is
        ``"json"``, ``"manifest"`` or ``"sorted"``.
    """
    ids_json = ids_json or os.environ.get(IMAGE_IDS_ENV) or None
    names = {p: Path(p).name for p in paths}
    if ids_json:
        by_name = image_ids_from_json(ids_json)
        missing = sorted(n for n in names.values() if n not in by_name)
        if missing:
            raise SmallboxError(f"{ids_json}: no image named {missing[0]!r} ({len(missing)} predicted file(s) not in the json)")
        ids = {p: by_name[n][0] for p, n in names.items()}
        return ids, {by_name[n][0]: by_name[n][1] for n in sorted(set(names.values()))}, "json"
    if known and all(n in known for n in names.values()):
        ids = {p: known[n] for p, n in names.items()}
        return ids, {known[n]: n for n in sorted(set(names.values()))}, "manifest"
    order = sorted(set(names.values()))
    id_of = {n: i + 1 for i, n in enumerate(order)}
    return {p: id_of[n] for p, n in names.items()}, {id_of[n]: n for n in order}, "sorted"


def write_images_json(out_dir, file_names: dict[int, str], sizes: dict[int, tuple[int, int]],
                      categories: list[dict]) -> Path:
    """A COCO json without annotations that names the images of a prediction run.

    Args:
        sizes: ``{image id: (width, height)}``.
        categories: ``[{"id", "name"}]``.
    """
    images = [{"id": i, "file_name": n, "width": sizes[i][0], "height": sizes[i][1]} for i, n in file_names.items()]
    return write_json_atomic({"images": images, "annotations": [], "categories": categories}, Path(out_dir) / IMAGES_JSON)
