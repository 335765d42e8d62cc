"""Adapters: the timm backbone layer (shapes, strides, layouts, local weights) and the
size-weighted box loss, checked against Ultralytics' own v8DetectionLoss / BboxLoss on a real
DeepPCB batch."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import yaml

from smallbox.datasets import SizeBuckets
from smallbox.errors import SmallboxError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SWIN = os.path.join(ROOT, "recipes", "models", "swin-tiny-test-yolo.yaml")
TINY_KW = {"embed_dim": 32, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8]}
IMGSZ = 320

torch.set_num_threads(1)


def _model_yaml(path=TINY_SWIN, **extra) -> dict:
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load(path)
    d.update(extra)
    return d


def _model(cfg, nc=6):
    from ultralytics.cfg import get_cfg

    from smallbox.adapters.yolo.model import SmallboxDetectionModel

    model = SmallboxDetectionModel(cfg, nc=nc, verbose=False)
    model.args = get_cfg()  # loss gains (box, cls, dfl), as the trainer sets them
    return model


# --- backbone -------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(256, 256), (320, 320), (480, 640), (1024, 2048)])
def test_tiny_swin_backbone_shapes_and_strides(hw):
    from smallbox.adapters.yolo.layers import TimmBackbone

    layer = TimmBackbone("swin_tiny_patch4_window7_224", [1, 2, 3], TINY_KW).eval()
    assert layer.nhwc  # timm's Swin is channels-last: the layer must permute
    with torch.no_grad():
        maps = layer(torch.rand(1 if hw[0] > 512 else 2, 3, *hw))
    assert layer.channels == [64, 128, 256] and layer.strides == [8, 16, 32]
    assert [tuple(m.shape[1:]) for m in maps] == [(c, hw[0] // s, hw[1] // s) for c, s in zip(layer.channels, layer.strides)]
    # NCHW for real: the map equals timm's NHWC output permuted, not a reshape of it.
    with torch.no_grad():
        x = torch.rand(1, 3, *hw)
        native = layer.body((x - layer.mean) / layer.std)
        ours = layer(x)
    for n, o in zip(native, ours):
        torch.testing.assert_close(o, n.permute(0, 3, 1, 2), rtol=0, atol=0)


def test_swin_yolo_model_strides_and_outputs_at_any_size():
    model = _model(TINY_SWIN).eval()
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    for h, w in [(256, 256), (320, 320), (480, 640)]:
        with torch.no_grad():
            y = model(torch.rand(1, 3, h, w))[0]
        anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
        assert tuple(y.shape) == (1, 4 + 6, anchors)


def test_nchw_backbone_passes_through_and_bn_eps_is_timm_s():
    from smallbox.adapters.yolo.layers import TimmBackbone

    d = _model_yaml()
    d["backbone"][0][3] = ["resnet18", [2, 3, 4]]
    for i, c in zip((1, 2, 3), (128, 256, 512)):
        d["backbone"][i][3][0] = c
    model = _model(d)
    layer = model.model[0]
    assert isinstance(layer, TimmBackbone) and not layer.nhwc and layer.strides == [8, 16, 32]
    bns = [m for m in layer.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)  # Ultralytics set 1e-3; timm's value is back
    head_bns = [m for m in model.model[4:].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert head_bns and all(m.eps == 1e-3 for m in head_bns)


@pytest.mark.parametrize("where", ["absolute", "weights_dir"])
def test_local_pretrained_weights_are_loaded(tmp_path, monkeypatch, where):
    import timm

    from smallbox.adapters.yolo.layers import TimmBackbone

    full = timm.create_model("swin_tiny_patch4_window7_224", **TINY_KW)
    torch.save(full.state_dict(), tmp_path / "tiny.pth")
    weights = str(tmp_path / "tiny.pth")
    if where == "weights_dir":  # a recipe's relative path, found by file name in $SMALLBOX_WEIGHTS_DIR
        monkeypatch.chdir(tmp_path.parent)
        monkeypatch.setenv("SMALLBOX_WEIGHTS_DIR", str(tmp_path))
        weights = "weights/tiny.pth"
    layer = TimmBackbone("swin_tiny_patch4_window7_224", [1, 2, 3], {**TINY_KW, "weights": weights})
    assert layer.weights == str(tmp_path / "tiny.pth")
    expected = full.state_dict()
    loaded = {k.replace("layers_", "layers."): v for k, v in layer.body.state_dict().items()}
    assert all(torch.equal(v, expected[k]) for k, v in loaded.items())
    assert set(expected) - set(loaded) == {"norm.weight", "norm.bias", "head.fc.weight", "head.fc.bias"}


def test_missing_weights_file_is_a_clear_error(tmp_path, monkeypatch):
    from smallbox.adapters.yolo.layers import TimmBackbone

    monkeypatch.delenv("SMALLBOX_WEIGHTS_DIR", raising=False)
    with pytest.raises(SmallboxError, match="weights file not found.*Nothing is downloaded"):
        TimmBackbone("swin_tiny_patch4_window7_224", [1, 2, 3], {**TINY_KW, "weights": str(tmp_path / "nope.pth")})
    with pytest.raises(SmallboxError, match="hub names"):
        TimmBackbone("hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k", [1, 2, 3])


def test_index_channel_mismatch_names_the_layer():
    d = _model_yaml()
    d["backbone"][2][3][0] = 100  # P4 of the tiny Swin has 128 channels
    with pytest.raises(SmallboxError, match=r"layer 2 Index.*states 100 channels.*has 128"):
        _model(d)


def test_size_weighting_config_errors_name_the_key():
    with pytest.raises(SmallboxError, match="size_weighting.weights"):
        _model(_model_yaml(size_weighting={"thresholds": [1024, 9216], "weights": [3.0, 1.5]}))
    with pytest.raises(SmallboxError, match="unknown key"):
        _model(_model_yaml(size_weighting={"thresholds": "coco", "weights": [1, 1, 1], "renorm": True, "small": 3}))
    with pytest.raises(SmallboxError, match="size_weighting.by must be one of original, input"):
        _model(_model_yaml(size_weighting={"thresholds": "coco", "weights": [1, 1, 1], "by": "augmented"}))


# --- size-weighted loss on a real batch ----------------------------------------------------


@pytest.fixture(scope="module")
def deeppcb_batch(tmp_path_factory):
    """One augmented (mosaic) training batch of 8 DeepPCB images at imgsz 320, from Ultralytics'
    own dataset and collate code; labels written from the bundled COCO json. It carries no
    ``orig_area`` (tests/test_size_weighting_buckets.py has the trainer's batches that do)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset

    root = tmp_path_factory.mktemp("pcb")
    coco = json.load(open(os.path.join(ROOT, "data", "deeppcb", "annotations", "train.json")))
    images = sorted(coco["images"], key=lambda im: im["id"])[:8]
    cats = sorted(c["id"] for c in coco["categories"])
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for im in images:
        src = os.path.join(ROOT, "data", "deeppcb", "images", im["file_name"])
        stem = os.path.splitext(im["file_name"])[0]
        os.symlink(src, root / "images" / im["file_name"])
        rows = []
        for a in coco["annotations"]:
            if a["image_id"] == im["id"]:
                x, y, w, h = a["bbox"]
                cx, cy = (x + w / 2) / im["width"], (y + h / 2) / im["height"]
                rows.append(f"{cats.index(a['category_id'])} {cx:.6f} {cy:.6f} {w / im['width']:.6f} {h / im['height']:.6f}")
        (root / "labels" / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    data = {"names": {i: str(c) for i, c in enumerate(cats)}, "nc": len(cats), "channels": 3}
    cfg = get_cfg(overrides={"imgsz": IMGSZ, "cache": False, "workers": 0, "plots": False})
    dataset = build_yolo_dataset(cfg, str(root / "images"), 8, data, mode="train")
    torch.manual_seed(0)
    np.random.seed(0)
    import random

    random.seed(0)
    batch = dataset.collate_fn([dataset[i] for i in range(8)])
    batch["img"] = batch["img"].float() / 255
    return batch


def _preds(model, batch):
    torch.manual_seed(0)
    model.train()
    return model(batch["img"])


def test_weights_one_equals_ultralytics_loss_exactly(deeppcb_batch):
    from ultralytics.utils.loss import v8DetectionLoss

    from smallbox.adapters.yolo.loss import SizeWeightedDetectionLoss

    model = _model(_model_yaml(size_weighting={"thresholds": [1024, 9216], "weights": [1.0, 1.0, 1.0], "renorm": True}))
    criterion = model.init_criterion()
    assert isinstance(criterion, SizeWeightedDetectionLoss)
    preds = _preds(model, deeppcb_batch)
    ours, ours_items = criterion(preds, deeppcb_batch)
    stock, stock_items = v8DetectionLoss(model)(preds, deeppcb_batch)
    assert deeppcb_batch["cls"].numel() > 10 and float(stock.detach().sum()) > 0
    assert torch.equal(ours, stock)
    assert all(torch.equal(ours_items[k], stock_items[k]) for k in stock_items)
    # and the gradients agree too
    g_ours = torch.autograd.grad(ours.sum(), preds["boxes"], retain_graph=True)[0]
    g_stock = torch.autograd.grad(stock.sum(), preds["boxes"])[0]
    assert torch.equal(g_ours, g_stock)


def test_model_without_size_weighting_uses_the_stock_loss():
    from ultralytics.utils.loss import v8DetectionLoss

    assert type(_model(_model_yaml()).init_criterion()) is v8DetectionLoss


def _recorded_bbox_inputs(criterion, preds, batch):
    """Run the criterion and return the arguments its bbox_loss got."""
    seen = {}
    forward = criterion.bbox_loss.forward

    def record(*args):
        seen["args"] = args
        return forward(*args)

    criterion.bbox_loss.forward = record
    loss = criterion(preds, batch)
    del criterion.bbox_loss.forward
    return loss, seen["args"]


@pytest.mark.parametrize("renorm", [True, False])
def test_small_box_weight_shifts_the_box_loss_toward_small_boxes(deeppcb_batch, renorm):
    """Weights (3.0, 1.5, 1.0) at COCO's 32²/96², ``by: input`` (the size the network sees,
    divided by the letterbox ratio): compare with Ultralytics' BboxLoss evaluated separately on
    the small and the medium/large foreground anchors."""
    from ultralytics.utils.loss import BboxLoss

    weights = (3.0, 1.5, 1.0)
    cfg = {"thresholds": [32**2, 96**2], "weights": list(weights), "renorm": renorm, "by": "input"}
    model = _model(_model_yaml(size_weighting=cfg))
    criterion = model.init_criterion()
    preds = _preds(model, deeppcb_batch)
    _, args = _recorded_bbox_inputs(criterion, preds, deeppcb_batch)
    pred_dist, pred_bboxes, anchors, target_grid, target_scores, ts_sum, fg, imgsz, stride = args

    # Independent bucket of each anchor's box: grid units -> input px -> original px (640 -> 128).
    wh = ((target_grid[..., 2:] - target_grid[..., :2]) * stride.view(1, -1, 1)).detach().numpy()
    ratio = IMGSZ / 640.0
    bucket = torch.from_numpy(SizeBuckets.coco().index(wh[..., 0] * wh[..., 1] / ratio**2))
    small = fg & (bucket == 0)
    assert small.sum() > 5 and (fg & (bucket > 0)).sum() > 5  # the batch has both

    stock = BboxLoss(criterion.reg_max)
    zero = (torch.tensor(0.0), torch.tensor(0.0))
    parts = [
        stock(pred_dist, pred_bboxes, anchors, target_grid, target_scores, ts_sum, fg & (bucket == b), imgsz, stride)
        if (fg & (bucket == b)).any() else zero
        for b in range(3)
    ]
    w_anchor = torch.tensor(weights, dtype=torch.float32)[bucket]
    base = target_scores.sum(-1) * fg
    k = float(base.sum() / (base * w_anchor).sum()) if renorm else 1.0

    ours = criterion.bbox_loss(*args)
    for term in (0, 1):  # IoU, DFL
        per_bucket = [float(p[term].detach()) for p in parts]
        assert math.isclose(float(ours[term].detach()), k * sum(w * x for w, x in zip(weights, per_bucket)), rel_tol=1e-5)
        share_stock = per_bucket[0] / sum(per_bucket)
        share_ours = k * weights[0] * per_bucket[0] / float(ours[term].detach())
        print(f"term {term}: small share {share_stock:.3g} -> {share_ours:.3g}, k={k:.3f}, small anchors {int(small.sum())} of {int(fg.sum())}")
        assert share_ours > share_stock * 1.5

    # renorm keeps the weight sum over foreground anchors; without it the sum grows.
    scale = criterion.bbox_loss.anchor_weights(target_grid, target_scores, fg, stride)
    total, total_stock = float((base * scale).sum()), float(base.sum())
    if renorm:
        assert math.isclose(total, total_stock, rel_tol=1e-6)
    else:
        assert total > total_stock * 1.1


def test_size_weighting_on_an_end_to_end_head(deeppcb_batch):
    """YOLO26-style heads (reg_max=1, L1 instead of DFL) get E2ELoss around our loss; with
    weights 1.0 it equals Ultralytics' own E2ELoss."""
    from ultralytics.utils.loss import E2ELoss

    from smallbox.adapters.yolo.loss import SizeWeightedDetectionLoss

    d = _model_yaml(end2end=True, reg_max=1, size_weighting={"thresholds": "coco", "weights": [1, 1, 1]})
    model = _model(d)
    criterion = model.init_criterion()
    assert isinstance(criterion, E2ELoss) and isinstance(criterion.one2one, SizeWeightedDetectionLoss)
    assert criterion.one2one.bbox_loss.dfl_loss is None  # the L1 path
    preds = _preds(model, deeppcb_batch)
    ours = criterion(preds, deeppcb_batch)
    stock = E2ELoss(model)(preds, deeppcb_batch)
    assert torch.equal(ours[0], stock[0])

    d["size_weighting"] = {"thresholds": "coco", "weights": [3.0, 1.5, 1.0], "renorm": True}
    weighted = _model(d)
    weighted.load_state_dict(model.state_dict())
    loss = weighted.init_criterion()(_preds(weighted, deeppcb_batch), deeppcb_batch)[0]
    assert torch.isfinite(loss).all() and not torch.equal(loss, stock[0])


def test_recipes_parse_and_weights_follow_buckets():
    from smallbox.adapters.size_weighting import SizeWeighting

    recipes = os.path.join(ROOT, "recipes", "size_weighting")
    files = sorted(f for f in os.listdir(recipes) if f.endswith(".yaml"))
    assert len(files) >= 4
    for f in files:
        d = yaml.safe_load(open(os.path.join(recipes, f)))
        w = SizeWeighting.from_config(d["size_weighting"], source=f)
        areas = np.array([1.0, w.buckets.thresholds[0], w.buckets.thresholds[1], 1e7])
        got = w.box_weights(torch.tensor(areas)).tolist()
        want = [w.weights[i] for i in SizeBuckets(w.buckets.thresholds).index(areas)]
        assert got == want


# --- recipes ---------------------------------------------------------------------------------


def _recipe_paths():
    folders = [os.path.join(ROOT, "recipes", "models"), os.path.join(ROOT, "recipes", "size_weighting")]
    return sorted(os.path.join(d, f) for d in folders for f in os.listdir(d) if f.endswith(".yaml"))


@pytest.mark.parametrize("path", [p for p in _recipe_paths() if "TimmBackbone" in open(p).read()], ids=os.path.basename)
def test_timm_recipes_state_the_backbone_s_real_channels(path):
    """Each Index row's channels equal timm's feature_info for that model (built on the meta
    device: no memory, no weights), and the stages are strides 8/16/32."""
    import timm

    d = yaml.safe_load(open(path))
    name, out_indices, options = d["backbone"][0][3]
    kwargs = {k: v for k, v in (options or {}).items() if k not in ("weights", "normalize")}
    with torch.device("meta"):
        body = timm.create_model(name.split(".")[0], features_only=True, out_indices=out_indices, strict_img_size=False, **kwargs)
    stated = [row[3][0] for row in d["backbone"][1:4]]
    assert [row[2] for row in d["backbone"][1:4]] == ["Index"] * 3
    assert stated == body.feature_info.channels() and body.feature_info.reduction() == [8, 16, 32]


def test_torchvision_swin_recipe_builds_with_stock_ultralytics():
    """recipes/models/tv-swin-t-yolo.yaml uses only Ultralytics' own layers: the stock
    DetectionModel builds it, with P3/P4/P5 at strides 8/16/32 and NCHW maps into the neck."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(os.path.join(ROOT, "recipes", "models", "tv-swin-t-yolo.yaml"), nc=6, verbose=False)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert type(model.model[0]).__name__ == "TorchVision"
    with torch.no_grad():
        assert tuple(model.eval()(torch.rand(1, 3, 224, 288))[0].shape) == (1, 10, sum((224 // s) * (288 // s) for s in (8, 16, 32)))
