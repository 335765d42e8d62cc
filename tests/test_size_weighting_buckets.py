"""The size-weighted loss weights every box by the bucket the evaluator gives it (issue 11.3).

Real training batches of converted DeepPCB images, through SmallboxTrainer's own dataloader with
Ultralytics' default augmentation (mosaic, random scale 0.5, translate, flips, letterbox), and
rect batches. The reference is independent of the code under test: a second, stock Ultralytics
dataset of the same images whose label class is the index of each box's annotation (Ultralytics
indexes ``cls`` with the boxes' own masks), drawn with the same seeds -- so each augmented box
names its annotation, whose json ``area`` is bucketed with pycocotools' closed ranges.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from yolo_helpers import TINY_MODEL, convert_small_deeppcb

from smallbox.datasets import SizeBuckets

torch.set_num_threads(1)
IMGSZ, BATCH, N_BATCHES = 320, 8, 2
WEIGHTS = (3.0, 1.5, 1.0)
COCO = SizeBuckets.coco()


def evaluator_buckets(area: float) -> set[int]:
    """The buckets pycocotools counts a box of ``area`` in: closed ranges, so both at a threshold."""
    return {i for i, (_, lo, hi) in enumerate(COCO.ranges()) if lo <= area <= hi}


def draw(loader, n=N_BATCHES, seed=0) -> list[dict]:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    it = iter(loader)
    return [next(it) for _ in range(n)]


def with_reference(converted: Path, root: Path) -> dict:
    """A converted dataset and its reference: the same images, each label row's class the index
    of its annotation in the converted ``annotations/train.json`` (non-crowd, in file order)."""
    gt = json.loads((converted / "annotations" / "train.json").read_text())
    anns = [a for a in gt["annotations"] if not a.get("iscrowd")]
    manifest = json.loads((converted / "manifest.json").read_text())
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    rows: dict[int, list[str]] = {}
    for i, a in enumerate(anns):
        (W, H), (x, y, w, h) = size[a["image_id"]], a["bbox"]
        row = (i, (x + w / 2) / W, (y + h / 2) / H, w / W, h / H)  # cxcywh_norm, printed as convert does ("%g")
        rows.setdefault(a["image_id"], []).append(" ".join(f"{v:g}" for v in row) + "\n")
    (root / "reference" / "labels").mkdir(parents=True)
    os.symlink(converted / "images" / "train", root / "reference" / "images")
    for name, image_id in manifest["splits"]["train"].items():
        (root / "reference" / "labels" / (os.path.splitext(name)[0] + ".txt")).write_text("".join(rows.get(image_id, [])))
    return {"data": converted / "data.yaml", "root": converted, "tmp": root, "reference_images": root / "reference" / "images",
            "areas": np.array([a["area"] for a in anns], dtype=np.float64),
            "bbox_areas": np.array([a["bbox"][2] * a["bbox"][3] for a in anns], dtype=np.float64)}


@pytest.fixture(scope="module")
def deeppcb(tmp_path_factory):
    """16 bundled DeepPCB training images (640x640), converted with ``smallbox convert``."""
    root = tmp_path_factory.mktemp("sw-deeppcb")
    return with_reference(convert_small_deeppcb(root / "data", n_train=16, n_val=4)["root"], root)


@pytest.fixture(scope="module")
def odd(odd_deeppcb, tmp_path_factory):
    """The odd DeepPCB (non-square images in sub-folders, scattered ids), with the json ``area``
    of every third box set apart from ``w*h`` (as a mask's area would be): 0.6 w*h."""
    from smallbox.cli import main

    root = tmp_path_factory.mktemp("sw-odd")
    data = json.loads(Path(odd_deeppcb["train"]).read_text())
    for a in data["annotations"][::3]:
        a["area"] = 0.6 * a["bbox"][2] * a["bbox"][3]
    train = root / "train.json"
    train.write_text(json.dumps(data))
    assert main(["convert", str(train), "--images", str(odd_deeppcb["images"]), "--val", str(odd_deeppcb["val"]),
                 "--out", str(root / "data")]) == 0
    return {**with_reference(root / "data", root), "json": train, "images": odd_deeppcb["images"]}


def make_trainer(dataset, name, renorm=False, by="original", weights=WEIGHTS, **overrides):
    from smallbox.adapters.yolo.trainer import SmallboxTrainer

    model_yaml = yaml.safe_load(TINY_MODEL.read_text())
    model_yaml["size_weighting"] = {"thresholds": "coco", "weights": list(weights), "renorm": renorm}
    if by != "original":  # the default is left unsaid, as in the recipes
        model_yaml["size_weighting"]["by"] = by
    path = dataset["tmp"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(model_yaml))
    trainer = SmallboxTrainer(overrides=dict(model=str(path), data=str(dataset["data"]), imgsz=IMGSZ, workers=0, device="cpu",
                                             plots=False, project=str(dataset["tmp"] / "runs"), name=name, exist_ok=True,
                                             **{"batch": BATCH, **overrides}))
    trainer.setup_model()
    trainer.set_model_attributes()
    return trainer


def draw_batches(dataset: dict, name: str, rect: bool) -> dict:
    """Batches from the trainer's own loader, and the reference's with the same seeds."""
    from ultralytics.data.build import build_dataloader, build_yolo_dataset

    batch = BATCH // 2 if rect else BATCH  # 8 odd images: batches of landscape and of portrait ones
    trainer = make_trainer(dataset, name, rect=rect, batch=batch)
    torch.manual_seed(0)
    ours = draw(trainer.get_dataloader(trainer.data["train"], batch, rank=-1, mode="train"))
    n = len(dataset["areas"])
    torch.manual_seed(0)
    ref_data = {"names": {i: str(i) for i in range(n)}, "nc": n, "channels": 3}
    ref = build_yolo_dataset(trainer.args, str(dataset["reference_images"]), batch, ref_data, mode="train", stride=32)
    shuffle = not (ref.rect and not np.all(ref.batch_shapes == ref.batch_shapes[0]))  # as DetectionTrainer.get_dataloader
    reference = draw(build_dataloader(ref, batch, 0, shuffle=shuffle, rank=-1))
    return {"trainer": trainer, "ours": ours, "reference": reference, "mode": name, "dataset": dataset}


@pytest.fixture(scope="module")
def deeppcb_batches(deeppcb):
    return draw_batches(deeppcb, "deeppcb-default-augmentation", rect=False)


@pytest.fixture(scope="module")
def odd_rect_batches(odd):
    return draw_batches(odd, "odd-rect", rect=True)


@pytest.fixture(params=["deeppcb_batches", "odd_rect_batches"])
def batches(request):
    return request.getfixturevalue(request.param)


def annotation_of_each_box(batches):
    """Per batch, the index of each box's annotation, read off the reference batch."""
    out = []
    for ours, ref in zip(batches["ours"], batches["reference"]):
        # the same augmentation drew the same boxes: the reference's class names each box's annotation
        assert torch.equal(ours["bboxes"], ref["bboxes"]) and torch.equal(ours["batch_idx"], ref["batch_idx"])
        out.append(ref["cls"].view(-1).long().numpy())
    return out


def test_every_box_of_a_training_batch_gets_the_evaluators_bucket(batches):
    boxes = wrong_before = at_threshold = not_wh = 0
    for ours, ann in zip(batches["ours"], annotation_of_each_box(batches)):
        truth = batches["dataset"]["areas"][ann]
        not_wh += int((truth != batches["dataset"]["bbox_areas"][ann]).sum())
        assert ours["cls"].shape == (len(truth), 1) and ours["cls"].dtype == torch.float32  # Ultralytics' layout
        carried = ours["orig_area"].numpy()
        assert np.array_equal(carried, truth)  # the json's area, bit for bit
        ours_bucket = COCO.index(carried)
        for a, b in zip(truth, ours_bucket):
            assert b in evaluator_buckets(a)  # 100 %: every box in a bucket pycocotools counts it in
            at_threshold += len(evaluator_buckets(a)) > 1
        assert np.array_equal(ours_bucket, COCO.index(truth))  # one bucket at a threshold: the upper (SizeBuckets.index)
        # today's rule: area at the network input / letterbox ratio of the image
        H, W = ours["img"].shape[2:]
        ratio = torch.tensor([min(H / s[0], W / s[1]) for s in ours["ori_shape"]], dtype=torch.float64)
        wh = ours["bboxes"][:, 2:].double() * torch.tensor([W, H], dtype=torch.float64)
        before = COCO.index((wh[:, 0] * wh[:, 1] / ratio[ours["batch_idx"].long()] ** 2).numpy())
        wrong_before += int((before != COCO.index(truth)).sum())
        boxes += len(truth)
    share = wrong_before / boxes
    print(f"{batches['mode']}: {boxes} boxes, 100% in the evaluator's bucket; the input-size rule puts {share:.1%} "
          f"in another bucket; {at_threshold} exactly at a threshold; {not_wh} with a json area other than w*h")
    assert boxes > 30
    if batches["mode"] == "odd-rect":
        assert not_wh > 5  # the json's area, not w*h of its box
    if batches["mode"] == "deeppcb-default-augmentation":
        assert share > 0.2  # the random scale moves boxes across 32² (issue: about a third; here about half)


def _recorded(criterion, preds, batch):
    seen = {}
    forward = criterion.bbox_loss.forward

    def record(*args):
        seen["args"] = args
        return forward(*args)

    criterion.bbox_loss.forward = record
    loss = criterion(preds, batch)
    del criterion.bbox_loss.forward
    return loss, seen["args"]


def _model_inputs(trainer, batch):
    batch = trainer.preprocess_batch(dict(batch))
    model = trainer.model.train()
    torch.manual_seed(0)
    return model, model(batch["img"]), batch


def _evaluator_weight_per_anchor(batch, truth, args) -> torch.Tensor:
    """Independently of the loss's target_gt_idx: the ground-truth box whose input-px xyxy equals
    each foreground anchor's target box, and the weight of its json area's bucket."""
    from ultralytics.utils.ops import xywh2xyxy

    target_grid, fg, stride = args[3], args[6], args[8]
    target_px = target_grid * stride.view(1, -1, 1)
    H, W = batch["img"].shape[2:]
    gt_px = xywh2xyxy(batch["bboxes"] * torch.tensor([W, H, W, H], dtype=torch.float32))
    weight = torch.tensor(WEIGHTS, dtype=torch.float64)[torch.from_numpy(COCO.index(truth))]
    out = torch.zeros(fg.shape, dtype=torch.float64)
    for b, a in zip(*torch.nonzero(fg, as_tuple=True)):
        mine = torch.nonzero(batch["batch_idx"] == b).view(-1)
        off = (gt_px[mine] - target_px[b, a]).abs().amax(-1)
        assert float(off.min()) < 1e-3
        out[b, a] = weight[mine[off.argmin()]]
    return out


def test_each_anchor_is_weighted_by_its_boxs_evaluator_bucket(batches):
    from smallbox.adapters.yolo.loss import SizeWeightedDetectionLoss

    trainer = batches["trainer"]
    for batch, ann in zip(batches["ours"], annotation_of_each_box(batches)):
        truth = batches["dataset"]["areas"][ann]
        model, preds, batch = _model_inputs(trainer, batch)
        criterion = model.init_criterion()
        assert isinstance(criterion, SizeWeightedDetectionLoss) and not criterion.weighting.renorm
        _, args = _recorded(criterion, preds, batch)
        fg = args[6]
        expected = _evaluator_weight_per_anchor(batch, truth, args)
        got = criterion.bbox_loss.anchor_weights(args[3], args[4], fg, args[8]).double()
        assert fg.sum() > 20 and torch.equal(got[fg], expected[fg])


def test_by_input_is_the_explicit_option_for_the_size_the_network_sees(deeppcb_batches):
    """``by: input``: Ultralytics' own dataset (no carried areas) and the input-size rule, which
    after random scale disagrees with the evaluator on many anchors."""
    trainer = make_trainer(deeppcb_batches["dataset"], "sw-by-input", by="input")
    torch.manual_seed(0)
    loader = trainer.get_dataloader(trainer.data["train"], BATCH, rank=-1, mode="train")
    assert "orig_area" not in loader.dataset[0]
    batch = deeppcb_batches["ours"][0]
    truth = deeppcb_batches["dataset"]["areas"][annotation_of_each_box(deeppcb_batches)[0]]
    model, preds, batch = _model_inputs(trainer, batch)
    criterion = model.init_criterion()
    assert criterion.weighting.by == "input"
    _, args = _recorded(criterion, preds, batch)
    fg = args[6]
    got = criterion.bbox_loss.anchor_weights(args[3], args[4], fg, args[8]).double()
    differ = float((got[fg] != _evaluator_weight_per_anchor(batch, truth, args)[fg]).double().mean())
    print(f"by: input weights {differ:.1%} of the foreground anchors off the evaluator's bucket")
    assert differ > 0.2


def test_unit_weights_equal_ultralytics_loss_exactly_with_carried_areas(deeppcb_batches):
    from ultralytics.utils.loss import v8DetectionLoss

    from smallbox.adapters.yolo.loss import SizeWeightedDetectionLoss

    trainer = make_trainer(deeppcb_batches["dataset"], "sw-unit", renorm=True, weights=(1.0, 1.0, 1.0))
    model, preds, batch = _model_inputs(trainer, deeppcb_batches["ours"][0])
    assert "orig_area" in batch
    criterion = model.init_criterion()
    assert isinstance(criterion, SizeWeightedDetectionLoss)
    ours, ours_items = criterion(preds, batch)
    stock, stock_items = v8DetectionLoss(model)(preds, batch)
    assert torch.equal(ours, stock) and all(torch.equal(ours_items[k], stock_items[k]) for k in stock_items)
    g_ours = torch.autograd.grad(ours.sum(), preds["boxes"], retain_graph=True)[0]
    g_stock = torch.autograd.grad(stock.sum(), preds["boxes"])[0]
    assert torch.equal(g_ours, g_stock)


def test_renorm_keeps_the_score_weighted_sum_over_foreground_anchors(deeppcb_batches):
    """YOLO: ``sum_a c_a * s_a == sum_a c_a`` with ``c_a = sum(target_scores[a])`` over foreground anchors."""
    trainer = make_trainer(deeppcb_batches["dataset"], "sw-renorm", renorm=True)
    model, preds, batch = _model_inputs(trainer, deeppcb_batches["ours"][0])
    criterion = model.init_criterion()
    _, args = _recorded(criterion, preds, batch)
    target_scores, fg = args[4], args[6]
    s = criterion.bbox_loss.anchor_weights(args[3], target_scores, fg, args[8])
    c = target_scores.sum(-1) * fg
    assert math.isclose(float((c * s).sum()), float(c.sum()), rel_tol=1e-6)
    assert len(set(s[fg].tolist())) > 1  # the batch has boxes of two buckets: the weights really differ


# --- where each box's area comes from ------------------------------------------------------------


def _label_rows(dataset, image_index=0):
    """Ultralytics' label dict of one converted training image, as ``verify_image_label`` reads it."""
    from smallbox.datasets.manifest import read_data_yaml

    data = read_data_yaml(dataset["data"])
    name, image_id = sorted(json.loads((dataset["root"] / "manifest.json").read_text())["splits"]["train"].items())[image_index]
    text = (dataset["root"] / "labels" / "train" / (os.path.splitext(name)[0] + ".txt")).read_text()
    rows = np.array([r.split() for r in text.strip().splitlines()], dtype=np.float32)
    gt = json.loads((dataset["root"] / "annotations" / "train.json").read_text())
    anns = [a for a in gt["annotations"] if a["image_id"] == image_id and not a.get("iscrowd")]
    label = {"im_file": str(dataset["root"] / "images" / "train" / name), "shape": (640, 640), "cls": rows[:, :1],
             "bboxes": rows[:, 1:]}
    return data, label, anns


def test_each_label_row_finds_its_annotation_whatever_the_order(deeppcb):
    from ultralytics.utils import LOGGER

    from smallbox.adapters.yolo.train_data import original_areas

    data, label, anns = _label_rows(deeppcb)
    assert len(anns) == len(label["cls"]) > 3
    order = np.random.default_rng(0).permutation(len(anns))  # Ultralytics' np.unique reorders deduplicated rows
    moved = label["bboxes"][order].copy()
    moved[0, 0] += 5 / 640  # a row edited by hand: 5 px off any annotation
    shuffled = {**label, "cls": label["cls"][order], "bboxes": moved}
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        areas, note = original_areas([shuffled], data, str(deeppcb["root"] / "images" / "train"))
    finally:
        LOGGER.removeHandler(handler)
    expected = np.array([anns[i]["area"] for i in order], dtype=np.float64)
    assert np.array_equal(areas[0][1:], expected[1:]) and "of their annotation in" in note
    w, h = moved[0, 2:].astype(np.float64) * 640
    assert areas[0][0] == pytest.approx(w * h, rel=1e-9) and any("1 label rows" in r for r in records)

    plain = {k: v for k, v in data.items() if k != "smallbox"}  # a YOLO dataset not written by smallbox convert
    areas, note = original_areas([label], plain, str(deeppcb["root"] / "images" / "train"))
    wh = label["bboxes"][:, 2].astype(np.float64) * 640 * label["bboxes"][:, 3].astype(np.float64) * 640
    assert np.allclose(areas[0], wh) and "no `smallbox:` section" in note and "w*h" in note


@pytest.fixture(scope="module")
def with_negative(tmp_path_factory):
    """4 DeepPCB images converted, the first without boxes."""
    from yolo_helpers import subset_json

    from smallbox.cli import main

    root = tmp_path_factory.mktemp("sw-negative")
    train = subset_json(Path(__file__).resolve().parents[1] / "data" / "deeppcb" / "annotations" / "train.json", 4,
                        root / "train.json")
    data = json.loads(train.read_text())
    first = data["images"][0]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first]
    train.write_text(json.dumps(data))
    assert main(["convert", str(train), "--images", str(Path(__file__).resolve().parents[1] / "data" / "deeppcb" / "images"),
                 "--out", str(root / "data"), "--val-fraction", "0.25"]) == 0
    return root / "data"


def _dataset(data_yaml, **hyp):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.utils import check_det_dataset

    from smallbox.adapters.yolo.train_data import build_original_area_dataset

    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"imgsz": 160, "mosaic": 0.0, "scale": 0.0, "translate": 0.0, **hyp})
    return build_original_area_dataset(cfg, data["train"], 4, data)


def test_an_image_without_boxes_collates(with_negative):
    from smallbox.adapters.yolo.train_data import OriginalAreaDataset

    ds = _dataset(with_negative / "data.yaml")
    samples = [ds[i] for i in range(len(ds))]
    assert any(len(s["cls"]) == 0 for s in samples) and any(len(s["cls"]) > 0 for s in samples)
    for s in samples:
        assert s["cls"].shape == (len(s["bboxes"]), 1) and s["orig_area"].shape == (len(s["bboxes"]),)
    batch = OriginalAreaDataset.collate_fn(samples)
    assert batch["orig_area"].shape == (len(batch["cls"]),) and batch["orig_area"].dtype == torch.float64


def test_spatial_albumentations_are_refused_by_name(with_negative):
    """Ultralytics' spatial albumentations rebuild ``cls`` as ``(-1, 1)``: no area could follow its box."""
    import albumentations as A

    from smallbox.errors import SmallboxError

    with pytest.raises(SmallboxError, match="augmentations: spatial .* by: input"):
        _dataset(with_negative / "data.yaml", augmentations=[A.HorizontalFlip(p=1.0)])
    assert len(_dataset(with_negative / "data.yaml", augmentations=[A.Blur(p=0.5)])) == 3  # pixel-level ones are fine


# --- the torchvision path: the same rule, the same renorm ----------------------------------------


def test_tv_targets_carry_the_json_area_through_augmentation(odd):
    from smallbox.adapters.tv.data import CocoDetection, build_augmentation
    from smallbox.datasets import CocoDataset, load_coco

    coco = load_coco(odd["json"], odd["images"])
    aug = build_augmentation({"letterbox": 320, "hflip": 1.0, "vflip": 0.0, "min_visibility": 0.0, "min_area": 0.0}, train=True)
    ds = CocoDetection(coco, coco.category_ids, aug)
    by_image = coco.annotations_by_image()
    not_wh = 0
    for i, image in enumerate(coco.images):
        anns = [a for a in by_image[image["id"]] if not a.get("iscrowd")]
        got = ds[i][1]["orig_area"].numpy()
        assert np.array_equal(got, np.array([a["area"] for a in anns], dtype=np.float32))  # the json's, not w*h
        not_wh += sum(a["area"] != a["bbox"][2] * a["bbox"][3] for a in anns)
    assert not_wh > 5
    bare = {**coco.data, "annotations": [{k: v for k, v in a.items() if k != "area"} for a in coco.annotations]}
    first = CocoDetection(CocoDataset(coco.path, bare, coco.image_root), coco.category_ids)[0][1]
    anns = [a for a in by_image[coco.images[0]["id"]] if not a.get("iscrowd")]
    assert first["orig_area"].tolist() == [float(a["bbox"][2] * a["bbox"][3]) for a in anns]  # w*h where the json has none


def test_tv_recipe_takes_the_shared_rule():
    from smallbox.adapters.tv.trainer import size_weights
    from smallbox.errors import SmallboxError

    def cfg(**spec):
        return {"loss": {"size_weights": {"thresholds": "coco", "weights": [3, 1.5, 1], **spec}}}

    assert size_weights(cfg(), [1.0]).renorm is True  # renorm's default, as the YOLO path's
    assert size_weights(cfg(renorm=False), [1.0]).renorm is False
    fit = size_weights(cfg(thresholds="fit"), [100.0, 200.0, 900.0, 1000.0, 5000.0, 9000.0])
    assert fit.buckets.thresholds[0] > 100
    with pytest.raises(SmallboxError, match="by: input.*original area only"):
        size_weights(cfg(by="input"), [1.0])
    with pytest.raises(SmallboxError, match=r"loss.size_weights: unknown key\(s\) \['small'\]"):
        size_weights(cfg(small=3), [1.0])


@pytest.fixture(scope="module")
def tv_batch():
    """Two DeepPCB images (640x640) and their targets."""
    from smallbox.adapters.tv.data import CocoDetection, collate
    from smallbox.datasets import load_coco

    root = Path(__file__).resolve().parents[1] / "data" / "deeppcb"
    coco = load_coco(root / "annotations" / "train.json", root / "images")
    coco = coco.subset([im["id"] for im in coco.images[:2]])
    ds = CocoDetection(coco, coco.category_ids)
    return collate([ds[0], ds[1]])


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_tv_renorm_keeps_the_stated_sum(arch, tv_batch):
    """Faster R-CNN: sum over positive ROIs of the weights == their number; RetinaNet: the same
    with each foreground anchor counted 1 / (its image's foreground anchors)."""
    import copy

    from smallbox.adapters.tv.losses import BoxSizeWeights
    from smallbox.adapters.tv.models import build_model
    from smallbox.adapters.tv.recipe import DEFAULTS

    m = copy.deepcopy(DEFAULTS["model"])
    m.update(arch=arch, backbone="resnet18", min_size=128, max_size=128, fpn_channels=32, rpn_pre_nms_top_n_train=200,
             rpn_post_nms_top_n_train=100, box_batch_size_per_image=64, topk_candidates=100)
    weights = BoxSizeWeights(COCO, WEIGHTS, renorm=True)
    torch.manual_seed(0)
    model = build_model(m, 6, weights).train()
    seen = []
    matched = weights.matched

    def record(targets, idxs, per_image=False):
        out = matched(targets, idxs, per_image)
        seen.append((idxs, out, per_image))
        return out

    weights.matched = record
    images, targets = tv_batch
    losses = model(list(images), [dict(t) for t in targets])
    assert torch.isfinite(sum(losses.values()))
    (idxs, out, per_image), = seen
    assert per_image == (arch == "retinanet")
    pos = [idx >= 0 for idx in idxs]
    coef = [p.double() / (max(1, int(p.sum())) if per_image else 1) for p in pos]
    total = sum(float((c * w.double()).sum()) for c, w in zip(coef, out))
    assert math.isclose(total, sum(float(c.sum()) for c in coef), rel_tol=1e-6)
    assert len({round(float(x), 6) for w, p in zip(out, pos) for x in w[p]}) > 1  # two buckets among the positives
