"""`smallbox yolo train / val / predict` end to end on a few DeepPCB images: a tiny random-init
model, 2 epochs at 128 px on CPU, offline."""

from __future__ import annotations

import csv
import json

import pytest

from yolo_helpers import ROOT, TINY_MODEL, convert_small_deeppcb, no_network, pycocotools_metrics

CONTRACT = ["coco/AP", "coco/AP50", "coco/AP75", "coco/AP_small", "coco/AP_medium", "coco/AP_large", "coco/AR_100",
            "fit/AP_small", "fit/AP_medium", "fit/AP_large"]
TRAIN = ["epochs=2", "imgsz=128", "batch=4", "device=cpu", "workers=0", "plots=False", "seed=0", "exist_ok=True"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One training run through the CLI; every validation's predictions captured with a
    callback (Ultralytics' own extension point) so the tests can re-evaluate them."""
    from ultralytics.utils.callbacks import base

    from smallbox.cli import main

    folder = tmp_path_factory.mktemp("yolo-train")
    dataset = convert_small_deeppcb(folder)
    captured = []

    def grab(validator):
        captured.append({"training": validator.training, "preds": [dict(p) for p in validator.coco_preds],
                         "image_ids": list(validator.coco_image_ids)})

    saved = base.default_callbacks
    base.default_callbacks = {**saved, "on_val_end": [*saved["on_val_end"], grab]}
    try:
        with no_network():
            rc = main(["yolo", "train", f"model={TINY_MODEL}", f"data={dataset['data']}", f"project={folder / 'runs'}",
                       "name=train", *TRAIN])
    finally:
        base.default_callbacks = saved
    assert rc == 0
    return {**dataset, "dir": folder / "runs" / "train", "captured": captured, "folder": folder}


def read_results(path):
    with open(path, newline="") as f:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]


def test_results_csv_equals_pycocotools_on_the_same_predictions(run):
    """Each epoch's row is what pycocotools says about that epoch's predictions (original json).
    (This tiny model scores about 0: tests/test_yolo_odd_parity.py checks the same on a model
    that detects.)"""
    from smallbox.datasets.manifest import load_manifest

    fit = next(b for b in load_manifest(run["data"]).buckets if b.name == "fit")
    rows = read_results(run["dir"] / "results.csv")
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    epochs = [c for c in run["captured"] if c["training"]]
    assert len(epochs) == len(rows)
    for row, cap in zip(rows, epochs):
        assert sorted(cap["image_ids"]) == sorted(im["id"] for im in json.loads(run["val_json"].read_text())["images"])
        reference = pycocotools_metrics(run["val_json"], cap["preds"], [("fit", fit.thresholds)])
        for key in CONTRACT:
            assert float(row[key]) == pytest.approx(reference[key], abs=1e-5), key


def test_end_of_training_exports(run):
    """predictions.json (val split, best.pt, original ids) and smallbox.json, as the contract says."""
    from pycocotools.coco import COCO

    info = json.loads((run["dir"] / "smallbox.json").read_text())
    assert info["path"] == "yolo" and info["imgsz"] == 128 and info["epochs"] == 2 and info["seed"] == 0
    assert info["predictions"] == "predictions.json" and info["data"] == str(run["data"])
    assert [b["name"] for b in info["buckets"]] == ["coco", "fit"]
    preds = json.loads((run["dir"] / "predictions.json").read_text())
    final = [c for c in run["captured"] if not c["training"]][-1]
    assert preds == final["preds"] and preds
    # one rounding rule, Ultralytics' own: boxes to 1/1000 px, scores to 5 decimals
    assert all(p["score"] == round(p["score"], 5) and p["bbox"] == [round(v, 3) for v in p["bbox"]] for p in preds)
    assert any(p["score"] != round(p["score"], 4) for p in preds)  # 5 decimals kept, not fewer
    gt = COCO(str(run["val_json"]))
    assert len(gt.loadRes(preds).getAnnIds()) == len(preds)
    metrics = json.loads((run["dir"] / "coco_metrics.json").read_text())
    reference = pycocotools_metrics(run["val_json"], preds)
    assert metrics["AP"] == pytest.approx(reference["coco/AP"], abs=1e-9)
    assert metrics["AR_100"] == pytest.approx(reference["coco/AR_100"], abs=1e-9)


def test_standalone_val_writes_predictions_with_original_ids(run, tmp_path):
    from smallbox.cli import main

    rc = main(["yolo", "val", f"model={run['dir'] / 'weights' / 'last.pt'}", f"data={run['data']}", "imgsz=128",
               "batch=4", "device=cpu", "plots=False", f"project={tmp_path}", "name=val", "conf=0.001", "max_det=5"])
    assert rc == 0
    preds = json.loads((tmp_path / "val" / "predictions.json").read_text())
    val_ids = {im["id"] for im in json.loads(run["val_json"].read_text())["images"]}
    assert preds and {p["image_id"] for p in preds} <= val_ids
    assert min(p["score"] for p in preds) >= 0.001
    per_image = {}
    for p in preds:
        per_image[p["image_id"]] = per_image.get(p["image_id"], 0) + 1
    assert max(per_image.values()) <= 5
    # the validator sees what predict sees: the same boxes as `smallbox yolo predict` with the same settings
    rc = main(["yolo", "predict", f"model={run['dir'] / 'weights' / 'last.pt'}", f"source={run['root'] / 'images' / 'val'}",
               "imgsz=128", "device=cpu", "save=False", f"project={tmp_path}", "name=predict", "conf=0.001", "max_det=5"])
    assert rc == 0
    predicted = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert same_boxes(preds, predicted)


def same_boxes(a, b, px=2e-3, score=2e-5) -> bool:
    """Equal prediction sets, up to the last rounded digit (batched convolutions differ in the
    last float bits from one image at a time)."""
    key = lambda p: (p["image_id"], p["category_id"], round(p["score"], 3), *[round(v) for v in p["bbox"]])  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    return len(a) == len(b) and all(
        (p["image_id"], p["category_id"]) == (q["image_id"], q["category_id"]) and abs(p["score"] - q["score"]) <= score
        and max(abs(x - y) for x, y in zip(p["bbox"], q["bbox"])) <= px for p, q in zip(a, b))


def test_predict_on_unknown_images_numbers_them_by_sorted_file_name(run, tmp_path):
    """BCCD images are in no json of the DeepPCB model: ids 1..N by file name, images.json names them."""
    from pycocotools.coco import COCO

    from smallbox.cli import main

    source = tmp_path / "imgs"
    source.mkdir()
    bccd = sorted((ROOT / "data" / "bccd" / "images").glob("*.jpg"))[:3]
    for f in bccd:
        (source / f.name).symlink_to(f)
    rc = main(["yolo", "predict", f"model={run['dir'] / 'weights' / 'last.pt'}", f"source={source}", "imgsz=128",
               "conf=0.001", "device=cpu", "save=False", f"project={tmp_path}", "name=pred"])
    assert rc == 0
    out = tmp_path / "pred"
    images = json.loads((out / "images.json").read_text())["images"]
    assert [(im["id"], im["file_name"]) for im in images] == [(i + 1, f.name) for i, f in enumerate(bccd)]
    preds = json.loads((out / "predictions.json").read_text())
    assert preds and len(COCO(str(out / "images.json")).loadRes(preds).getAnnIds()) == len(preds)
    rows = list(csv.DictReader(open(out / "predictions.csv", newline="")))
    assert [r["image_id"] for r in rows] == [f.name for f in bccd]


def test_predict_takes_image_ids_from_a_given_json(run, tmp_path, monkeypatch):
    from smallbox.cli import main

    ids_json = ROOT / "data" / "bccd" / "annotations" / "val.json"
    monkeypatch.setenv("SMALLBOX_IMAGE_IDS", str(ids_json))
    rc = main(["yolo", "predict", f"model={run['dir'] / 'weights' / 'last.pt'}", f"source={ROOT / 'data' / 'bccd' / 'images'}",
               "imgsz=128", "conf=0.001", "device=cpu", "save=False", f"project={tmp_path}", "name=pred"])
    assert rc == 0
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    known = {im["id"] for im in json.loads(ids_json.read_text())["images"]}
    assert preds and {p["image_id"] for p in preds} == known
    assert not (tmp_path / "pred" / "images.json").exists()
