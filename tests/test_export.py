"""Competition CSV round trip on real predictions; pycocotools accepts what comes back."""

import contextlib
import csv
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from smallbox.errors import SmallboxError
from smallbox.predictions import (
    load_predictions,
    read_competition_csv,
    write_competition_csv,
)


def test_csv_round_trip(tmp_path, deeppcb_val, deeppcb_predictions):
    gt = json.loads(deeppcb_val.read_text())
    preds = load_predictions(deeppcb_predictions[0])
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    path = write_competition_csv(preds, tmp_path / "sub.csv", names, cat_ids)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["PredictionString", "image_id"] and len(rows) == len(gt["images"])
    # each row, read here without smallbox: `label score xmin ymin xmax ymax` per box, label = the
    # category id's position among the sorted ids
    by_name = {}
    for p in preds:
        x, y, w, h = p["bbox"]
        by_name.setdefault(names[p["image_id"]], []).append((cat_ids.index(p["category_id"]), p["score"], x, y, x + w, y + h))
    for row in rows:
        values = [float(v) for v in row["PredictionString"].split()]
        got = sorted(tuple(values[i:i + 6]) for i in range(0, len(values), 6))
        want = sorted(by_name.get(row["image_id"], []))
        assert len(got) == len(want) and np.allclose(got, want, rtol=1e-5, atol=1e-3), row["image_id"]
    back = read_competition_csv(path, {v: k for k, v in names.items()}, cat_ids)
    assert len(back) == len(preds)
    key = lambda p: (p["image_id"], p["category_id"], round(p["score"], 4), round(p["bbox"][0], 2))
    for a, b in zip(sorted(preds, key=key), sorted(back, key=key)):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert b["bbox"] == pytest.approx(a["bbox"], rel=1e-5, abs=1e-3)
        assert b["score"] == pytest.approx(a["score"], rel=1e-5)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(deeppcb_val))
        assert len(coco.loadRes(back).getAnnIds()) == len(preds)


def test_csv_errors_name_line_and_image(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("PredictionString,image_id\n0 0.9 1 2 3 4,a.png\n0 0.9 1 2,b.png\n")
    with pytest.raises(SmallboxError, match=r"sub.csv:3: .*'b.png'"):
        read_competition_csv(path, {"a.png": 1, "b.png": 2}, [1])
    path.write_text("PredictionString,image_id\n0 0.9 1 2 3 4,zzz.png\n")
    with pytest.raises(SmallboxError, match="unknown image 'zzz.png'"):
        read_competition_csv(path, {"a.png": 1}, [1])


def test_csv_rows_list_boxes_by_descending_score(tmp_path, deeppcb_val, deeppcb_predictions):
    """The competition CSV's documented order: each row's boxes from the highest score down (the
    bundled predictions hold ties; the order is checked, not only the set)."""
    gt = json.loads(deeppcb_val.read_text())
    preds = load_predictions(deeppcb_predictions[1])
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    path = write_competition_csv(preds, tmp_path / "sub.csv", names, sorted(c["id"] for c in gt["categories"]))
    rows = list(csv.DictReader(path.open()))
    checked = 0
    for row in rows:
        values = [float(v) for v in row["PredictionString"].split()]
        scores = values[1::6]
        assert scores == sorted(scores, reverse=True), row["image_id"]
        checked += len(set(scores)) > 1
    assert checked > 100
