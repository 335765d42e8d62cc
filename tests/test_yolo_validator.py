"""SmallboxValidator maps YOLO outputs back to the original COCO ids and reports what
pycocotools reports. Driven with predictions made from the ground truth (moved, dropped,
relabelled, plus false positives), so AP is far from 0 and 1 and any id or scaling mix-up shows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from yolo_helpers import convert_small_deeppcb, pycocotools_metrics


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return convert_small_deeppcb(tmp_path_factory.mktemp("yolo-val"), n_train=4, n_val=12)


def degraded_predictions(pbatch, rng) -> dict:
    """Predictions ``{"bboxes" [N, 4] xyxy in network-input pixels, "conf" [N], "cls" [N]}``
    from one image's ground truth: 80% of the boxes kept and jittered, 15% relabelled, and
    three random false positives."""
    boxes, cls = pbatch["bboxes"].clone(), pbatch["cls"].clone()
    keep = torch.from_numpy(rng.random(len(cls)) < 0.8)
    boxes, cls = boxes[keep], cls[keep]
    boxes += torch.from_numpy(rng.normal(0, 0.6, boxes.shape)).float()
    flip = torch.from_numpy(rng.random(len(cls)) < 0.15)
    cls[flip] = (cls[flip] + 1) % 6
    h, w = pbatch["imgsz"]
    fp = torch.from_numpy(rng.uniform(0, min(h, w) - 8, (3, 2))).float()
    boxes = torch.cat([boxes, torch.cat([fp, fp + 6], 1)])
    cls = torch.cat([cls, torch.from_numpy(rng.integers(0, 6, 3)).float()])
    conf = torch.from_numpy(rng.uniform(0.05, 1.0, len(cls))).float()
    order = conf.argsort(descending=True)
    return {"bboxes": boxes[order], "conf": conf[order], "cls": cls[order], "extra": torch.zeros((len(cls), 0))}


def run_validator(data_yaml, save_dir, seed=0):
    from ultralytics.data.utils import check_det_dataset

    from smallbox.adapters.yolo.validator import SmallboxValidator

    v = SmallboxValidator(save_dir=save_dir, args=dict(data=str(data_yaml), imgsz=160, batch=4, plots=False, conf=0.001))
    v.data = check_det_dataset(str(data_yaml))
    v.device, v.stride, v.training = torch.device("cpu"), 32, False
    v.dataloader = v.get_dataloader(v.data["val"], 4)
    v.init_metrics(SimpleNamespace(names=v.data["names"]))
    rng = np.random.default_rng(seed)
    for batch in v.dataloader:
        batch = v.preprocess(batch)
        preds = [degraded_predictions(v._prepare_batch(i, batch), rng) for i in range(len(batch["im_file"]))]
        v.update_metrics(preds, batch)
    return v, v.get_stats()


def test_validator_metrics_equal_pycocotools_on_original_json(dataset, tmp_path):
    v, stats = run_validator(dataset["data"], tmp_path)
    preds = json.loads((tmp_path / "predictions.json").read_text())
    fit = next(b for b in v.coco_eval.buckets if b.name == "fit")
    reference = pycocotools_metrics(dataset["val_json"], preds, [("fit", fit.thresholds)])
    assert set(reference) <= set(stats)
    for key, value in reference.items():
        assert stats[key] == pytest.approx(value, abs=1e-9), key
    # the ids really came back: a mix-up would leave AP near 0
    assert 0.3 < stats["coco/AP50"] < 0.95
    assert stats["coco/AP_small"] > 0.1


def test_exported_ids_are_the_original_ones(dataset, tmp_path):
    from pycocotools.coco import COCO

    run_validator(dataset["data"], tmp_path)
    original = json.loads(dataset["val_json"].read_text())
    preds = json.loads((tmp_path / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} == {im["id"] for im in original["images"]}
    assert {p["category_id"] for p in preds} <= {c["id"] for c in original["categories"]}
    gt = COCO(str(dataset["val_json"]))
    assert len(gt.loadRes(preds).getAnnIds()) == len(preds)


def test_competition_csv_parses_back_to_the_same_boxes(dataset, tmp_path):
    from smallbox.predictions import read_competition_csv

    run_validator(dataset["data"], tmp_path)
    original = json.loads(dataset["val_json"].read_text())
    preds = json.loads((tmp_path / "predictions.json").read_text())
    names = {im["file_name"]: im["id"] for im in original["images"]}
    back = read_competition_csv(tmp_path / "predictions.csv", names, sorted(c["id"] for c in original["categories"]))
    key = lambda p: (p["image_id"], -p["score"], p["category_id"], p["bbox"][0])  # noqa: E731
    assert len(back) == len(preds)
    for a, b in zip(sorted(back, key=key), sorted(preds, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], rel=1e-5)
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=2e-3)


def test_plain_dataset_keeps_stock_validation(tmp_path):
    """A data.yaml without a smallbox section still validates (Ultralytics' metrics only)."""
    from smallbox.callbacks.coco_metrics import CocoSplitEvaluator

    assert CocoSplitEvaluator.for_data({"path": str(tmp_path), "val": "images/val", "nc": 1}) is None


def test_best_model_metric_is_the_chosen_column(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SMALLBOX_FITNESS", "coco/AP_small")
    _, stats = run_validator(dataset["data"], tmp_path)
    assert stats["fitness"] == stats["coco/AP_small"] != stats["metrics/mAP50-95(B)"]


def test_unknown_best_model_metric_is_an_error_listing_the_choices(dataset, tmp_path, monkeypatch):
    from smallbox.errors import SmallboxError

    monkeypatch.setenv("SMALLBOX_FITNESS", "coco/AP_tiny")
    with pytest.raises(SmallboxError, match="coco/AP_small"):
        run_validator(dataset["data"], tmp_path)


def test_no_predictions_still_gives_every_column(dataset):
    """Epoch 1 of a fresh model may predict nothing: the results.csv header must not change."""
    from ultralytics.data.utils import check_det_dataset

    from smallbox.callbacks.coco_metrics import CocoSplitEvaluator, flatten_metrics

    evaluator = CocoSplitEvaluator.for_data(check_det_dataset(str(dataset["data"])), "val")
    result = evaluator.evaluate([], [im["id"] for im in evaluator.gt.images])
    columns = flatten_metrics(result, evaluator.buckets)
    assert list(columns) == evaluator.columns
    reference = pycocotools_metrics(dataset["val_json"], [])
    assert all(columns[k] == pytest.approx(v) for k, v in reference.items())
    assert columns["coco/AP"] == 0.0 and columns["coco/AP_large"] == -1.0  # DeepPCB has no box >= 96²
