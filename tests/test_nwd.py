"""NWD (Wang et al. 2021) in the YOLO assigner and box loss: the distance against the Gaussian
2-Wasserstein distance computed independently (matrix square roots, scipy), Ultralytics' loss and
assignment bit for bit with ``ratio: 0``, a real assignment that NWD changes, the constant
measured at convert, a recipe that trains from the CLI, and bad settings refused."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from yolo_helpers import DEEPPCB, convert_small_deeppcb

from smallbox.adapters.nwd import NWDConfig, nwd, resolve_constant
from smallbox.errors import SmallboxError


def gaussian_w2_squared(box_a, box_b) -> float:
    """W₂² between N(m_a, S_a) and N(m_b, S_b), the general formula
    ``|m_a - m_b|² + tr(S_a + S_b - 2 (S_b^½ S_a S_b^½)^½)``, with each box (x1, y1, x2, y2) the
    Gaussian of the paper: mean its centre, covariance diag(w²/4, h²/4)."""
    def gaussian(b):
        x1, y1, x2, y2 = b
        return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.diag([((x2 - x1) / 2) ** 2, ((y2 - y1) / 2) ** 2])

    (ma, sa), (mb, sb) = gaussian(box_a), gaussian(box_b)
    root_b = sqrtm(sb)
    cross = sqrtm(root_b @ sa @ root_b)
    return float(np.sum((ma - mb) ** 2) + np.trace(sa + sb - 2 * cross).real)


@pytest.mark.parametrize("box_a, box_b, constant", [
    ((10, 10, 16, 18), (11, 9, 19, 17), 12.8),  # two tiny boxes, the paper's AI-TOD constant
    ((0, 0, 4, 4), (30, 40, 36, 43), 5.0),      # far apart: IoU 0, NWD still > 0
    ((5.5, 7.25, 9.0, 30.0), (5.5, 7.25, 9.0, 30.0), 20.0),  # identical
])
def test_nwd_equals_the_gaussian_wasserstein_distance(box_a, box_b, constant):
    expected = math.exp(-math.sqrt(gaussian_w2_squared(box_a, box_b)) / constant)
    got = nwd(torch.tensor(box_a, dtype=torch.float64), torch.tensor(box_b, dtype=torch.float64), constant)
    assert float(got) == pytest.approx(expected, abs=1e-3 if box_a == box_b else 1e-7)  # EPS keeps sqrt's gradient finite
    assert 0 < float(got) <= 1


def test_one_pixel_costs_a_tiny_box_much_less_nwd_than_iou():
    """The paper's motivation: a 6 px box shifted by 1 px loses a third of its IoU, little NWD."""
    a, b = torch.tensor([0.0, 0.0, 6.0, 6.0]), torch.tensor([1.0, 0.0, 7.0, 6.0])
    iou = 30 / 42
    assert 1 - iou > 0.28 and 1 - float(nwd(a, b, 12.8)) < 0.08


@pytest.fixture(scope="module")
def batch_and_model(tmp_path_factory):
    """Two real batches of bundled DeepPCB images (Ultralytics' dataset, no augmentation, 160 px)
    and a YOLOv8n from scratch."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.nn.tasks import DetectionModel

    from smallbox.datasets.manifest import read_data_yaml

    paths = convert_small_deeppcb(tmp_path_factory.mktemp("nwd"), n_train=16, n_val=2)
    data = read_data_yaml(paths["data"])
    cfg = get_cfg(overrides={"imgsz": 160})
    ds = YOLODataset(img_path=str(paths["root"] / "images" / "train"), data={**data, "channels": 3}, imgsz=160,
                     augment=False, hyp=cfg, rect=False, batch_size=8, task="detect")
    batches = list(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False, collate_fn=YOLODataset.collate_fn))
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=6, verbose=False)
    model.args = cfg
    model.train()
    return batches, model, data


def _loss_and_assignment(criterion, model, batch):
    outputs = []
    handle = criterion.assigner.register_forward_hook(lambda m, a, o: outputs.append(o))
    try:
        with torch.no_grad():
            loss, items = criterion.loss(model(batch["img"].float() / 255), batch)
    finally:
        handle.remove()
    return loss, items, outputs[-1]


def test_ratio_zero_is_ultralytics_bit_for_bit_and_other_ratios_are_not(batch_and_model):
    from ultralytics.utils.loss import v8DetectionLoss

    from smallbox.adapters.yolo.loss import NWDAssigner, SmallboxDetectionLoss

    batches, model, _ = batch_and_model
    theirs = v8DetectionLoss(model)
    off = SmallboxDetectionLoss(model, nwd=NWDConfig(9.0, True, True, 0.0))
    on = SmallboxDetectionLoss(model, nwd=NWDConfig(9.0, True, True, 0.5))
    assert isinstance(off.assigner, NWDAssigner)  # the NWD code runs; only its share is 0
    for batch in batches:
        loss, items, assigned = _loss_and_assignment(theirs, model, batch)
        loss0, items0, assigned0 = _loss_and_assignment(off, model, batch)
        assert torch.equal(loss, loss0) and all(torch.equal(items[k], items0[k]) for k in items)
        assert all(torch.equal(x, y) for x, y in zip(assigned, assigned0))
        loss5, _, assigned5 = _loss_and_assignment(on, model, batch)
        assert not torch.equal(loss, loss5)
        assert not torch.equal(assigned[2], assigned5[2])  # the soft targets move with the overlap


def test_nwd_in_the_box_loss_only_leaves_the_assignment_alone(batch_and_model):
    from ultralytics.utils.loss import v8DetectionLoss

    from smallbox.adapters.yolo.loss import SmallboxDetectionLoss

    batches, model, _ = batch_and_model
    theirs = v8DetectionLoss(model)
    box_only = SmallboxDetectionLoss(model, nwd=NWDConfig(9.0, False, True, 1.0))
    loss, items, assigned = _loss_and_assignment(theirs, model, batches[0])
    loss_b, items_b, assigned_b = _loss_and_assignment(box_only, model, batches[0])
    assert all(torch.equal(x, y) for x, y in zip(assigned, assigned_b))
    assert torch.equal(items["cls_loss"], items_b["cls_loss"]) and torch.equal(items["dfl_loss"], items_b["dfl_loss"])
    assert not torch.equal(items["box_loss"], items_b["box_loss"])  # classification untouched, box term changed


def test_constant_auto_is_the_mean_box_side_measured_at_convert(batch_and_model):
    import json

    _, _, data = batch_and_model
    size = data["smallbox"]["box_size"]
    train = json.loads((DEEPPCB / "annotations" / "train.json").read_text())
    first = train["images"][:16]
    long_side = {im["id"]: max(im["width"], im["height"]) for im in first}
    sides = [math.sqrt(a["bbox"][2] * a["bbox"][3]) / long_side[a["image_id"]] for a in train["annotations"]
             if a["image_id"] in long_side]
    assert size["mean_side_rel"] == pytest.approx(sum(sides) / len(sides), abs=1e-6)
    resolved = resolve_constant({"loss": {"nwd": {"constant": "auto"}}}, data, 320)
    assert resolved["loss"]["nwd"]["constant"] == pytest.approx(size["mean_side_rel"] * 320, abs=1e-3)
    assert resolve_constant({"loss": {"nwd": {"constant": 7}}}, data, 320)["loss"]["nwd"]["constant"] == 7


@pytest.mark.parametrize("spec, message", [
    ({"constant": -1}, "constant: a positive number"),
    ({"ratio": 1.5}, "ratio: a number in [0, 1]"),
    ({"assigner": False, "box": False}, "would change nothing"),
    ({"ratoi": 0.5}, "unknown key(s) ['ratoi']"),
])
def test_bad_nwd_settings_are_refused(spec, message):
    with pytest.raises(SmallboxError, match=re.escape(message)):
        NWDConfig.from_model_yaml({"yaml_file": "m.yaml", "loss": {"nwd": spec}})


def test_the_recipe_trains_from_the_cli_with_c_from_the_data(tmp_path):
    from smallbox.cli import main

    paths = convert_small_deeppcb(tmp_path / "data", n_train=8, n_val=4)
    recipe = DEEPPCB.parents[1] / "recipes" / "nwd" / "yolov8n-nwd.yaml"
    assert main(["yolo", "train", f"model={recipe}", f"data={paths['data']}", "imgsz=96", "epochs=1", "batch=4",
                 "workers=0", "device=cpu", f"project={tmp_path}", "name=run", "plots=False"]) == 0
    from ultralytics.nn.tasks import load_checkpoint

    model = load_checkpoint(tmp_path / "run" / "weights" / "best.pt")[0]
    recorded = model.yaml["loss"]["nwd"]
    size = paths["root"].joinpath("data.yaml").read_text()
    assert recorded["ratio"] == 0.5 and "auto: mean box side" in recorded["constant_from"]
    assert 0 < recorded["constant"] < 96 and "mean_side_rel" in size
