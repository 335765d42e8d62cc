"""One number per model, on a real model: what `smallbox yolo val` and every results.csv row
report equals what `smallbox yolo predict` + `smallbox eval` give for the same weights.

The model is the bundled YOLOv8n trained by smallbox on the 800 DeepPCB training images at 320 px
(data/models/yolov8n-deeppcb-320.pt); it scores AP_small well above 0 on val images it never saw,
so a difference in letterbox or NMS shows (Ultralytics' own validator reads 0.01-0.05 AP_small
off on it: a rect canvas with a 16 px border, and multi-label NMS)."""

from __future__ import annotations

import csv
import json

import pytest

from smallbox.cli import main
from test_yolo_train import same_boxes
from yolo_helpers import ROOT, subset_json

MODEL = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"
DEEPPCB = ROOT / "data" / "deeppcb"
SETTINGS = ["imgsz=320", "conf=0.001", "iou=0.7", "max_det=100", "device=cpu"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    train = subset_json(DEEPPCB / "annotations" / "train.json", 16, folder / "train.json")
    val = subset_json(DEEPPCB / "annotations" / "val.json", 48, folder / "val.json")
    assert main(["convert", str(train), "--images", str(DEEPPCB / "images"), "--val", str(val), "--out",
                 str(folder / "data")]) == 0
    return folder


def predict_and_eval(weights, dataset, out) -> tuple[list, dict]:
    """The deployed numbers: predict on the val images, then smallbox eval against the json."""
    assert main(["yolo", "predict", f"model={weights}", f"source={dataset / 'data' / 'images' / 'val'}", *SETTINGS,
                 "save=False", "verbose=False", f"project={out}", "name=predict", "exist_ok=True"]) == 0
    preds = json.loads((out / "predict" / "predictions.json").read_text())
    assert main(["eval", str(dataset / "val.json"), str(out / "predict" / "predictions.json"), "--json",
                 str(out / "metrics.json")]) == 0
    return preds, json.loads((out / "metrics.json").read_text())


def test_standalone_val_reports_what_predict_and_eval_give(dataset, tmp_path):
    assert main(["yolo", "val", f"model={MODEL}", f"data={dataset / 'data' / 'data.yaml'}", *SETTINGS, "batch=8",
                 "plots=False", f"project={tmp_path}", "name=val"]) == 0
    val = json.loads((tmp_path / "val" / "coco_metrics.json").read_text())
    preds, deployed = predict_and_eval(MODEL, dataset, tmp_path)
    assert deployed["AP_small"] > 0.1  # a model that detects: the comparison means something
    for key in ("AP", "AP50", "AP_small", "AP_medium"):
        assert val[key] == pytest.approx(deployed[key], abs=0.002), key
    assert same_boxes(json.loads((tmp_path / "val" / "predictions.json").read_text()), preds)


def test_results_csv_row_is_what_predict_and_eval_give_for_last_pt(dataset, tmp_path):
    """A short fine-tune (one epoch, tiny learning rate): the epoch's row against the weights it saved."""
    assert main(["yolo", "train", f"model={MODEL}", f"data={dataset / 'data' / 'data.yaml'}", "epochs=1", "imgsz=320",
                 "batch=8", "device=cpu", "workers=0", "optimizer=SGD", "lr0=0.0002", "warmup_epochs=0", "plots=False",
                 "conf=0.001", "iou=0.7", "max_det=100", f"project={tmp_path}", "name=train"]) == 0
    with open(tmp_path / "train" / "results.csv", newline="") as f:
        row = {k.strip(): float(v) for k, v in next(csv.DictReader(f)).items()}
    _, deployed = predict_and_eval(tmp_path / "train" / "weights" / "last.pt", dataset, tmp_path)
    assert deployed["AP_small"] > 0.1
    for key in ("AP", "AP50", "AP_small", "AP_medium"):
        assert row[f"coco/{key}"] == pytest.approx(deployed[key], abs=0.002), key
