"""The YOLO path on awkward data with a model that detects something.

The bundled YOLOv8n (trained by smallbox on DeepPCB at 320 px) is fine-tuned for one epoch with a
tiny learning rate on DeepPCB made awkward (tests/odd_data.py: 640x480 and 480x640 crops in
sub-folders, category ids 3..99, large scattered image ids). Its AP there is far from 0, so:

- the epoch's results.csv row is pycocotools' on the predictions the validator made that epoch
  (captured with an Ultralytics callback), against the original json;
- `yolo predict` on the val folder gives the boxes the run exported (predictions.json), with the
  original ids, and pycocotools scores them as results.csv does.

Non-square images are where the validator's letterbox (a square canvas instead of predict's
rect one) or its NMS would differ from predict; category ids 3..99 where a class-index slip shows.
"""

from __future__ import annotations

import csv
import json

import pytest
from odd_data import CATEGORY_IDS, make_odd_deeppcb
from test_yolo_train import same_boxes
from yolo_helpers import DEEPPCB, ROOT, no_network, pycocotools_metrics

from smallbox.cli import main

MODEL = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"
SETTINGS = ["imgsz=320", "conf=0.001", "iou=0.7", "max_det=100", "device=cpu"]
CONTRACT = ["coco/AP", "coco/AP50", "coco/AP75", "coco/AP_small", "coco/AP_medium", "coco/AP_large", "coco/AR_100",
            "fit/AP_small", "fit/AP_medium", "fit/AP_large"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """8 odd training images, 24 odd val images (unseen by the bundled model), converted, and one
    epoch of fine-tuning; every validation's predictions captured."""
    from ultralytics.utils.callbacks import base

    root = tmp_path_factory.mktemp("yolo-odd")
    train = make_odd_deeppcb(DEEPPCB / "annotations" / "train.json", DEEPPCB / "images", root, 8)
    val = make_odd_deeppcb(DEEPPCB / "annotations" / "val.json", DEEPPCB / "images", root, 24)
    assert main(["convert", str(train), "--images", str(root / "images"), "--val", str(val), "--out", str(root / "data")]) == 0
    captured = []

    def grab(validator):
        captured.append({"training": validator.training, "preds": [dict(p) for p in validator.coco_preds]})

    saved = base.default_callbacks
    base.default_callbacks = {**saved, "on_val_end": [*saved["on_val_end"], grab]}
    try:
        with no_network():
            assert main(["yolo", "train", f"model={MODEL}", f"data={root / 'data' / 'data.yaml'}", "epochs=1", "batch=8",
                         "workers=0", "optimizer=SGD", "lr0=0.0002", "warmup_epochs=0", "plots=False", "seed=0", *SETTINGS,
                         f"project={root / 'runs'}", "name=train"]) == 0
    finally:
        base.default_callbacks = saved
    return {"root": root, "val": val, "data": root / "data", "dir": root / "runs" / "train", "captured": captured}


def test_results_csv_row_is_pycocotools_on_the_epochs_predictions(run):
    from smallbox.datasets.manifest import load_manifest

    fit = next(b for b in load_manifest(run["data"] / "data.yaml").buckets if b.name == "fit")
    with open(run["dir"] / "results.csv", newline="") as f:
        (row,) = [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    (epoch,) = [c["preds"] for c in run["captured"] if c["training"]]
    reference = pycocotools_metrics(run["val"], epoch, [("fit", fit.thresholds)])
    assert reference["coco/AP50"] > 0.3 and reference["coco/AP_small"] > 0.05  # a model that detects
    for key in CONTRACT:
        assert row[key] == pytest.approx(reference[key], abs=1e-5), key


def test_predict_gives_the_exported_boxes_with_the_original_ids(run, tmp_path):
    exported = json.loads((run["dir"] / "predictions.json").read_text())
    assert main(["yolo", "predict", f"model={run['dir'] / 'weights' / 'best.pt'}", f"source={run['data'] / 'images' / 'val'}",
                 *SETTINGS, "save=False", "verbose=False", f"project={tmp_path}", "name=predict"]) == 0
    predicted = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    gt = json.loads(run["val"].read_text())
    assert {p["image_id"] for p in predicted} == {im["id"] for im in gt["images"]}
    assert {p["category_id"] for p in predicted} <= set(CATEGORY_IDS.values())
    assert same_boxes(exported, predicted)
    with open(run["dir"] / "results.csv", newline="") as f:
        (row,) = [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    deployed = pycocotools_metrics(run["val"], predicted)
    for key in ("coco/AP", "coco/AP50", "coco/AP_small"):  # last.pt = best.pt after one epoch
        assert row[key] == pytest.approx(deployed[key], abs=0.002), key
