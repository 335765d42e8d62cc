"""The torchvision path on CPU with tiny settings: size-weighted losses against torchvision's own,
a few training steps on real DeepPCB images, and the CLI end to end (train, resume, eval, predict)
with ids checked by pycocotools against the original json."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from torchvision.models.detection.roi_heads import fastrcnn_loss

from smallbox.adapters.tv.data import CocoDetection, collate
from smallbox.adapters.tv.engine import build_optimizer, train_step
from smallbox.adapters.tv.losses import BoxSizeWeights, size_weighted_fastrcnn_loss
from smallbox.adapters.tv.models import build_model
from smallbox.adapters.tv.recipe import DEFAULTS, load_recipe
from smallbox.adapters.tv.trainer import size_weights
from smallbox.cli import main
from smallbox.datasets import SizeBuckets, load_coco
from smallbox.predictions import read_competition_csv

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

TINY_MODEL = {"backbone": "resnet18", "min_size": 128, "max_size": 128, "fpn_channels": 32,
              "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100, "rpn_pre_nms_top_n_test": 100,
              "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 64, "topk_candidates": 100}


def tiny_settings(**changes) -> dict:
    m = copy.deepcopy(DEFAULTS["model"])
    m.update(TINY_MODEL, **changes)
    return m


@pytest.fixture(scope="module")
def deeppcb_batch(deeppcb_train, deeppcb_images):
    """Two real DeepPCB training images (640x640) and their targets, boxes xyxy_abs."""
    coco = load_coco(deeppcb_train, deeppcb_images)
    coco = coco.subset([im["id"] for im in coco.images[:2]])
    ds = CocoDetection(coco, coco.category_ids)
    return collate([ds[0], ds[1]])


def losses_of(model, images, targets, seed=0) -> dict:
    torch.manual_seed(seed)  # the RPN / ROI samplers draw at random
    model.train()
    return model(list(images), [dict(t) for t in targets])


def weighted_copy(model_settings, reference, weights, thresholds=SizeBuckets.coco()):
    model = build_model(model_settings, 6, BoxSizeWeights(thresholds, weights))
    model.load_state_dict(reference.state_dict())
    return model


def test_box_size_weights_follow_size_buckets():
    buckets = SizeBuckets.coco()
    areas = np.array([1.0, 1023.9, 1024.0, 5000.0, 9216.0, 1e6])
    weights = BoxSizeWeights(buckets, (3.0, 1.5, 1.0))(torch.tensor(areas))
    assert weights.tolist() == [[3.0, 1.5, 1.0][i] for i in buckets.index(areas)]


def test_unit_weights_equal_torchvision_fastrcnn_loss_exactly():
    torch.manual_seed(0)
    n, k = 50, 7
    class_logits, box_regression = torch.randn(n, k), torch.randn(n, 4 * k)
    labels = [torch.randint(0, k, (30,)), torch.randint(0, k, (20,))]
    targets = [torch.randn(30, 4), torch.randn(20, 4)]
    ones = [torch.ones(30), torch.ones(20)]
    ours = size_weighted_fastrcnn_loss(class_logits, box_regression, labels, targets, ones)
    theirs = fastrcnn_loss(class_logits, box_regression, labels, targets)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_size_weighted_model_loss(arch, deeppcb_batch):
    """Unit weights: torchvision's losses bit for bit. Weights on small boxes: the box loss is
    linear in the small weight (normaliser unchanged), and raising it raises the small share."""
    images, targets = deeppcb_batch
    settings = tiny_settings(arch=arch)
    torch.manual_seed(0)
    stock = build_model(settings, 6)
    box_key = "loss_box_reg" if arch == "faster_rcnn" else "bbox_regression"
    reference = losses_of(stock, images, targets)
    unit = losses_of(weighted_copy(settings, stock, (1, 1, 1)), images, targets)
    assert {k: v.item() for k, v in unit.items()} == {k: v.item() for k, v in reference.items()}
    box = {w: losses_of(weighted_copy(settings, stock, (w, 1, 1)), images, targets)[box_key].item() for w in (0, 1, 3)}
    small_part = box[1] - box[0]
    assert small_part > 0, "the DeepPCB images have small (< 32²) boxes matched to samples"
    assert box[3] == pytest.approx(box[0] + 3 * small_part, rel=1e-5)
    assert 3 * small_part / box[3] > small_part / box[1]


def test_size_buckets_use_original_area_not_resized(deeppcb_batch):
    """640 -> 128 shrinks every area 25x: were buckets taken from the resized boxes, all would be
    small. Weighting only large boxes (by original area) must differ from weighting nothing."""
    images, targets = deeppcb_batch
    areas = torch.cat([t["orig_area"] for t in targets])
    assert (areas >= 32**2).any() and (areas / 25 < 32**2).all()
    settings = tiny_settings()
    stock = build_model(settings, 6)
    base = losses_of(stock, images, targets)["loss_box_reg"].item()
    small_only = losses_of(weighted_copy(settings, stock, (1, 0, 0)), images, targets)["loss_box_reg"].item()
    assert 0 < small_only < base


def test_training_steps_lower_the_loss(deeppcb_batch):
    images, targets = deeppcb_batch
    torch.manual_seed(0)
    model = build_model(tiny_settings(), 6)
    t = dict(DEFAULTS["train"], lr=0.01)
    optimizer = build_optimizer(model, t)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    model.train()
    history = [train_step(model, optimizer, scaler, list(images), list(targets), 10.0, False)["loss"] for _ in range(8)]
    assert np.mean(history[-2:]) < 0.7 * np.mean(history[:2]), history


def write_subset(src, ids, path):
    data = json.loads(src.read_text())
    keep = set(ids)
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    path.write_text(json.dumps(data))
    return path


def test_bad_recipe_key_is_a_clear_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {backbone: resnet18}\n")
    assert main(["tv", "train", str(recipe), "train.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "train.lrr" in err and str(recipe) in err and "Traceback" not in err
    recipe.write_text("model: {backbon: resnet18}\n")
    assert main(["tv", "train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "model.backbon" in err and str(recipe) in err


def test_cli_train_resume_eval_predict(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images):
    val_ids = [im["id"] for im in json.loads(deeppcb_val.read_text())["images"][:3]]
    train_ids = [im["id"] for im in json.loads(deeppcb_train.read_text())["images"][:4]]
    train_json = write_subset(deeppcb_train, train_ids, tmp_path / "train.json")
    val_json = write_subset(deeppcb_val, val_ids, tmp_path / "val.json")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(json.dumps({"model": TINY_MODEL, "train": {"epochs": 1, "batch": 2, "workers": 0, "warmup_iters": 1},
                                  "eval": {"buckets": ["fit", "16^2,64^2"], "batch": 3}}))
    common = [f"data.train={train_json}", f"data.val={val_json}", f"data.images={deeppcb_images}",
              f"train.project={tmp_path / 'runs'}"]
    assert main(["tv", "train", str(recipe), *common]) == 0
    run = tmp_path / "runs" / "tiny"
    first = torch.load(run / "last.pt", weights_only=True)
    assert first["epoch"] == 1 and first["recipe"]["model"]["anchor_sizes"] == [16, 32, 64, 128, 256]  # unset: recorded
    best = torch.load(run / "best.pt", weights_only=True)
    assert "optimizer" not in best and best["model"].keys() == first["model"].keys()  # the model to use, no training state
    assert main(["tv", "train", str(run / "best.pt")]) == 2  # a resume needs last.pt

    # Resume for a second epoch: the same folder, one more row, the LR schedule continued.
    assert main(["tv", "train", str(run / "last.pt"), "train.epochs=2"]) == 0
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["scheduler"]["last_epoch"] == 2 * 2  # 4 images / batch 2, two epochs
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for col in ("coco/AP", "coco/AP50", "coco/AP_small", "coco/AP_medium", "coco/AP_large", "coco/AR_100",
                "fit/AP_small", "custom/AP_large"):
        assert col in rows[0] and float(rows[-1][col]) >= -1
    info = json.loads((run / "smallbox.json").read_text())
    assert info["path"] == "tv" and info["epochs"] == 2 and info["predictions"] == "predictions.json"
    assert (run / "results.png").stat().st_size > 0 and (run / "best.pt").is_file()

    # The original json (all 200 val images) accepts every exported prediction.
    original = COCO(str(deeppcb_val))
    train_preds = json.loads((run / "predictions.json").read_text())
    assert train_preds and {p["image_id"] for p in train_preds} <= set(val_ids)
    original.loadRes(train_preds)

    out = tmp_path / "eval.json"
    assert main(["tv", "eval", str(run / "best.pt"), "--out", str(out), "model.score_thresh=0.0"]) == 0
    eval_preds = json.loads(out.read_text())
    original.loadRes(eval_preds)
    assert len(eval_preds) >= len(train_preds)  # a lower score threshold keeps more boxes

    pred_json, sub_csv = tmp_path / "pred.json", tmp_path / "sub.csv"
    assert main(["tv", "predict", str(run / "best.pt"), "--images", str(deeppcb_images), "--coco", str(val_json),
                 "--out", str(pred_json), "--csv", str(sub_csv)]) == 0
    preds = json.loads(pred_json.read_text())
    original.loadRes(preds)
    key = lambda p: (p["image_id"], p["category_id"], tuple(p["bbox"]))  # noqa: E731
    assert sorted(map(key, preds)) == sorted(map(key, train_preds))
    images = {im["file_name"]: im["id"] for im in original.dataset["images"]}
    from_csv = read_competition_csv(sub_csv, images, sorted(original.getCatIds()))
    assert len(from_csv) == len(preds)
    assert all(0 <= p["bbox"][0] and p["bbox"][0] + p["bbox"][2] <= 640.01 for p in preds)


TINY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}


@pytest.mark.parametrize("arch,backbone,kwargs", [("faster_rcnn", "timm:swin_tiny_patch4_window7_224", TINY_SWIN),
                                                  ("retinanet", "timm:test_efficientnet", {})])
def test_timm_backbones_train_and_predict(arch, backbone, kwargs, deeppcb_batch):
    """Swin (NHWC features) and EfficientNet (NCHW) feed torchvision's FPN at a non-square,
    non-224 input; a step trains, and eval mode returns boxes in the original 640x640 frame."""
    images, targets = deeppcb_batch
    model = build_model(tiny_settings(arch=arch, backbone=backbone, backbone_kwargs=kwargs, min_size=96, max_size=160), 6)
    losses = train_step(model.train(), build_optimizer(model, DEFAULTS["train"]), torch.amp.GradScaler("cuda", enabled=False),
                        list(images), list(targets), 10.0, False)
    assert np.isfinite(losses["loss"]) and losses["loss"] > 0
    with torch.no_grad():
        out = model.eval()([images[0][:, :, :480]])[0]  # 640 high, 480 wide
    assert out["boxes"].shape[1] == 4 and (out["boxes"][:, 2] <= 480.01).all()


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes" / "tv").glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_recipes_load(recipe):
    cfg = load_recipe(recipe)
    assert cfg["model"]["arch"] in ("faster_rcnn", "retinanet")
    if cfg["loss"]["size_weights"]:
        assert size_weights(cfg, [100.0, 2000.0, 20000.0]).weights.tolist() == cfg["loss"]["size_weights"]["weights"]


def test_unset_anchors_start_at_16_px_except_for_torchvision_detectors_and_old_checkpoints(tmp_path):
    """model.anchor_sizes unset: 16 px upwards as the recipes; with model.weights (a detector trained
    with torchvision's anchors) torchvision's 32 px; a checkpoint whose recipe left them unset was
    trained when unset meant 32 px and is rebuilt so."""
    from smallbox.adapters.tv.models import anchor_sizes_of
    from smallbox.adapters.tv.trainer import model_from_checkpoint

    assert anchor_sizes_of(build_model(tiny_settings(), 6)) == [16, 32, 64, 128, 256]
    torchvision_detector = build_model(tiny_settings(anchor_sizes=[32, 64, 128, 256, 512]), 6)
    torch.save(torchvision_detector.state_dict(), tmp_path / "detector.pth")
    with_weights = build_model(tiny_settings(weights=str(tmp_path / "detector.pth")), 6)
    assert anchor_sizes_of(with_weights) == [32, 64, 128, 256, 512]
    old = {"recipe": {"model": tiny_settings()}, "classes": [{"category_id": i, "name": str(i)} for i in range(6)],
           "model": torchvision_detector.state_dict()}
    assert anchor_sizes_of(model_from_checkpoint(old)) == [32, 64, 128, 256, 512]
