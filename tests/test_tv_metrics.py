"""The torchvision path scored on a model that detects something.

A tiny Faster R-CNN (timm's ``test_resnet`` backbone, random init) is overfitted by `smallbox tv
train` on two BCCD photos -- one turned to portrait (480x640), category ids 7, 40, 99, large
scattered image ids, file names in a sub-folder -- and evaluated on the same two photos: epochs of
32 steps, resumed until AP50 reaches 0.3 (one or two epochs; from random init the first epoch ends
anywhere between AP50 0.1 and 0.7). On it: every number results.csv holds is what
pycocotools says about the predictions the run exports; `tv eval` and `tv predict` (the folder
rule, mapped back by file name here) give those same predictions. A label -> category slip, a
width/height swap or an image-id mix-up would leave AP at 0 or move the boxes. Training labels
shifted by one (the first class taught as background) are checked directly: on these dense red
cells such a model still reaches AP50 0.1.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from odd_data import BCCD_CATEGORY_IDS, make_odd_bccd
from test_yolo_train import same_boxes
from yolo_helpers import ROOT, no_network, pycocotools_metrics

from smallbox.cli import main

BCCD = ROOT / "data" / "bccd"
STEPS = 32  # two images, batch 2: one epoch over the pair repeated STEPS times
ENOUGH_AP50, MAX_EPOCHS = 0.3, 4
CONTRACT = ["coco/AP", "coco/AP50", "coco/AP75", "coco/AP_small", "coco/AP_medium", "coco/AP_large", "coco/AR_100",
            "fit/AP_small", "fit/AP_medium", "fit/AP_large"]
OVERFIT = ["model.backbone=timm:test_resnet", "model.min_size=160", "model.max_size=160", "model.fpn_channels=32",
           "model.rpn_pre_nms_top_n_train=200", "model.rpn_post_nms_top_n_train=100", "model.rpn_pre_nms_top_n_test=100",
           "model.rpn_post_nms_top_n_test=50", "model.box_batch_size_per_image=64", "model.score_thresh=0.001",
           "aug.hflip=0", "train.epochs=1", "train.batch=2", "train.workers=0", "train.limit_batches=null",
           "train.optimizer=adamw", "train.lr=0.002", "train.schedule=step", "train.steps=[100]", "train.warmup_iters=3",
           "train.device=cpu", "train.seed=0", "eval.buckets=[fit]"]


def repeated(src: Path, times: int, out: Path) -> Path:
    """The images of ``src`` listed ``times`` times under new ids: one epoch is ``times`` passes
    (one checkpoint write instead of one per pass)."""
    data = json.loads(src.read_text())
    images, annotations = [], []
    for r in range(1, times + 1):
        images += [dict(im, id=im["id"] + r * 10**8) for im in data["images"]]
        annotations += [dict(a, id=a["id"] + r * 10**8, image_id=a["image_id"] + r * 10**8) for a in data["annotations"]]
    out.write_text(json.dumps(dict(data, images=images, annotations=annotations)))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tv-overfit")
    val = make_odd_bccd(BCCD / "annotations" / "val.json", BCCD / "images", root, 2)
    train = repeated(val, STEPS, root / "train.json")
    folder = root / "overfit"
    with no_network():
        assert main(["tv", "train", str(ROOT / "recipes" / "tv" / "smoke.yaml"), f"data.train={train}", f"data.val={val}",
                     f"data.images={root / 'images'}", *OVERFIT, f"train.project={root}", "train.name=overfit"]) == 0
        for epochs in range(2, MAX_EPOCHS + 1):
            if float(read_rows(folder)[-1]["coco/AP50"]) >= ENOUGH_AP50:
                break
            assert main(["tv", "train", str(folder / "last.pt"), f"train.epochs={epochs}"]) == 0
    return {"dir": folder, "val": val, "train": train, "images": root / "images", "gt": json.loads(val.read_text())}


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as f:
        return [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]


def tertiles(areas) -> tuple[float, float]:
    """`fit` as documented: area tertiles of the training boxes, rounded to a whole side, squared."""
    sides = np.sqrt(np.quantile(np.asarray(areas, dtype=np.float64), [1 / 3, 2 / 3]))
    return tuple(float(max(1, round(s)) ** 2) for s in sides)


def test_results_csv_is_pycocotools_on_the_exported_predictions(run):
    """The best row (best.pt's epoch, whose predictions the run exports) against pycocotools."""
    rows = read_rows(run["dir"])
    row = max(rows, key=lambda r: float(r["coco/AP"]))
    preds = json.loads((run["dir"] / "predictions.json").read_text())
    fit = tertiles([a["area"] for a in json.loads(run["train"].read_text())["annotations"]])
    reference = pycocotools_metrics(run["val"], preds, [("fit", fit)])
    assert reference["coco/AP50"] > 0.1 and reference["coco/AP"] > 0.03  # it detects: the comparison means something
    for key in CONTRACT:
        assert float(row[key]) == pytest.approx(reference[key], abs=1e-5), key


def test_training_labels_map_back_to_each_boxs_category_id(run):
    """What the model is taught and what the exporter maps back agree, whatever the model learnt:
    every training box's label is 1..K (torchvision's 0 is the background), and the checkpoint's
    class list turns it back into that box's category id in the json."""
    import torch

    from smallbox.adapters.tv.trainer import Data

    ckpt = torch.load(run["dir"] / "best.pt", map_location="cpu", weights_only=True)
    data = Data(ckpt["recipe"])
    classes = [c["category_id"] for c in ckpt["classes"]]
    gt = json.loads(run["train"].read_text())
    for k in range(2):  # the two photos (the json repeats them)
        image = gt["images"][k]
        want = sorted((a["category_id"], *np.round([x, y, x + w, y + h], 2)) for a in gt["annotations"]
                      if a["image_id"] == image["id"] for x, y, w, h in [a["bbox"]])
        _, target = data.train[k]
        assert target["image_id"] == image["id"] and int(target["labels"].min()) >= 1
        got = sorted((classes[int(label) - 1], *np.round(box, 2)) for label, box in
                     zip(target["labels"].tolist(), target["boxes"].double().tolist()))
        assert got == want, image["file_name"]


def test_predictions_carry_the_original_ids_inside_each_images_own_frame(run):
    """Within 480 px across on the portrait photo, 640 on the landscape one."""
    preds = json.loads((run["dir"] / "predictions.json").read_text())
    images = {im["id"]: im for im in run["gt"]["images"]}
    assert {p["image_id"] for p in preds} == set(images)
    assert {p["category_id"] for p in preds} <= set(BCCD_CATEGORY_IDS.values())
    for p in preds:
        x, y, w, h = p["bbox"]
        im = images[p["image_id"]]
        assert x >= -1e-3 and y >= -1e-3 and x + w <= im["width"] + 1e-3 and y + h <= im["height"] + 1e-3, p


def test_tv_eval_and_tv_predict_give_the_runs_predictions(run, tmp_path):
    preds = json.loads((run["dir"] / "predictions.json").read_text())
    assert main(["tv", "eval", str(run["dir"] / "best.pt"), "--device", "cpu", "--out", str(tmp_path / "eval.json")]) == 0
    assert same_boxes(json.loads((tmp_path / "eval.json").read_text()), preds)

    out = tmp_path / "predict" / "predictions.json"
    assert main(["tv", "predict", str(run["dir"] / "best.pt"), "--images", str(run["images"] / "cells"), "--device", "cpu",
                 "--out", str(out)]) == 0
    listed = json.loads((out.parent / "predictions.images.json").read_text())["images"]
    by_name = {im["file_name"].split("/")[-1]: im for im in run["gt"]["images"]}
    names = sorted(by_name)
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in listed] == [
        (i, n, by_name[n]["width"], by_name[n]["height"]) for i, n in enumerate(names, start=1)]
    back = [dict(p, image_id=by_name[names[p["image_id"] - 1]]["id"]) for p in json.loads(out.read_text())]
    assert same_boxes(back, preds)
