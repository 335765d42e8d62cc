"""The competition CSV: columns ``PredictionString,image_id``, where ``image_id`` is the image's
file name and ``PredictionString`` is ``label score xmin ymin xmax ymax ...`` (xyxy_abs pixels;
``label`` is the class index, i.e. the position of the category id in ascending order)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import write_text_atomic

CSV_COLUMNS = ("PredictionString", "image_id")


def to_competition_csv(preds: list[dict], file_names: dict[int, str], category_ids: list[int]) -> str:
    """CSV text, one row per image of ``file_names`` (images without boxes get an empty string).

    Args:
        preds: COCO results (``bbox`` xywh_abs).
        file_names: ``{image id: file name}``, in the order rows are written.
        category_ids: every category id; ``label`` = position in ascending order.
    """
    label_of = {cid: i for i, cid in enumerate(sorted(category_ids))}
    by_image = defaultdict(list)
    for p in preds:
        by_image[p["image_id"]].append(p)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for image_id, name in file_names.items():
        parts = []
        for p in sorted(by_image.get(image_id, []), key=lambda p: -p["score"]):
            x, y, w, h = p["bbox"]
            parts.append(f"{label_of[p['category_id']]} {p['score']:.6g} {x:.6g} {y:.6g} {x + w:.6g} {y + h:.6g}")
        writer.writerow([" ".join(parts), name])
    return out.getvalue()


def write_competition_csv(preds, path, file_names: dict[int, str], category_ids: list[int]) -> Path:
    return write_text_atomic(to_competition_csv(preds, file_names, category_ids), path)


def read_competition_csv(path, image_ids: dict[str, int], category_ids: list[int]) -> list[dict]:
    """COCO results from a competition CSV.

    Args:
        image_ids: ``{file name: image id}``.
        category_ids: every category id; label ``i`` is the ``i``-th smallest.
    """
    path = Path(path)
    category_ids = sorted(category_ids)
    preds = []
    try:
        rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    except FileNotFoundError:
        raise SmallboxError(f"{path}: no such file") from None
    if rows and set(CSV_COLUMNS) - set(rows[0]):
        raise SmallboxError(f"{path}: need columns {', '.join(CSV_COLUMNS)}")
    for line, row in enumerate(rows, start=2):
        name = row["image_id"]
        if name not in image_ids:
            raise SmallboxError(f"{path}:{line}: unknown image {name!r}")
        values = (row["PredictionString"] or "").split()
        if len(values) % 6:
            raise SmallboxError(f"{path}:{line}: PredictionString of {name!r} is not groups of 6 values")
        for i in range(0, len(values), 6):
            try:
                label = int(values[i])
                score, x0, y0, x1, y1 = map(float, values[i + 1 : i + 6])
                category_id = category_ids[label]
                if label < 0:
                    raise IndexError
            except (ValueError, IndexError):
                raise SmallboxError(f"{path}:{line}: bad box {' '.join(values[i:i + 6])!r} for {name!r}") from None
            preds.append({"image_id": image_ids[name], "category_id": category_id,
                          "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return preds
