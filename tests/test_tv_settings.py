"""Settings of the torchvision path that decide what small boxes get: anchors from 16 px in the
Faster R-CNN recipes, evaluation settings comparable with the YOLO path, and RetinaNet's
background label kept out of sliced inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from smallbox.adapters.tv.recipe import DEFAULTS, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes" / "tv").glob("faster_rcnn_*.yaml"))


def positive_anchors(anchor_sizes, box, size=1024, thr=0.5) -> int:
    """How many anchors of an FPN (strides 4..64) overlap ``box`` with IoU >= thr (0.5: RetinaNet's
    positive threshold; the RPN's 0.7 no square box of 16-32 px reaches, only its best anchor)."""
    gen = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    feats = [torch.zeros(1, 1, size // s, size // s) for s in (4, 8, 16, 32, 64)]
    anchors = gen(ImageList(torch.zeros(1, 3, size, size), [(size, size)]), feats)[0]
    return int((box_iou(torch.tensor([box], dtype=torch.float32), anchors) >= thr).sum())


def test_faster_rcnn_recipes_give_a_20px_box_positive_anchors():
    box = [500.0, 500.0, 520.0, 520.0]  # 20 x 20 px: COCO-small, a third of DeepPCB's boxes
    assert positive_anchors([32, 64, 128, 256, 512], box) == 0  # torchvision's default anchors
    for recipe in RECIPES:
        sizes = load_recipe(recipe)["model"]["anchor_sizes"]
        assert sizes and sizes[0] == 16, recipe.name
        assert positive_anchors(sizes, box) >= 8, recipe.name


def test_evaluation_defaults_match_the_yolo_path():
    """YOLO validates with conf=0.001 and max_det=300; a tv run scored with 0.05 keeps fewer
    low-score boxes and reads lower AP, which is not a difference between the models."""
    m = DEFAULTS["model"]
    assert m["score_thresh"] == 0.001 and m["detections_per_img"] == 300


def test_retinanet_background_label_never_becomes_a_class(monkeypatch):
    """RetinaNet's sigmoid head scores label 0 too; label - 1 would make it class -1, which
    indexes the LAST category. It is dropped, as in every tv export."""
    from smallbox.adapters import predict_fn as pf

    class Fake(torch.nn.Module):
        def forward(self, images):
            return [{"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4]]),
                     "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 2, 1])}]

    monkeypatch.setattr("smallbox.adapters.tv.trainer.model_from_checkpoint", lambda ckpt: Fake())
    fn = pf._tv_predict_fn({"classes": [{"category_id": 3, "name": "a"}, {"category_id": 9, "name": "b"}]}, 0.001, "cpu")
    boxes, scores, labels = fn(np.zeros((32, 32, 3), np.uint8))
    assert labels.tolist() == [1, 0] and scores.tolist() == [np.float32(0.8), np.float32(0.7)]
    assert fn.category_ids == [3, 9]
