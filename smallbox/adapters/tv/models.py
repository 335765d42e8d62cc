"""Faster R-CNN and RetinaNet from ``torchvision.models.detection`` with a torchvision ResNet-FPN
or any timm ``features_only`` backbone + torchvision's ``FeaturePyramidNetwork``.

Nothing is downloaded: weights come only from local files named in the recipe.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FeaturePyramidNetwork, misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ...errors import SmallboxError
from ..timm_features import TimmFeatures
from .losses import BoxSizeWeights, enable_size_weights

ARCHS = ("faster_rcnn", "retinanet")
TIMM_PREFIX = "timm:"
RPN_SAMPLING = ("rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test",
                "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_batch_size_per_image")


class TimmFPNBackbone(TimmFeatures):
    """The shared timm builder (:class:`~smallbox.adapters.timm_features.TimmFeatures`: strict
    local weights, window padding for Swin, NCHW maps) followed by torchvision's FPN. A subclass
    rather than a wrapper, so the state-dict keys stay ``body.*`` and ``fpn.*``.

    Args:
        name (str): timm model name (e.g. ``swin_tiny_patch4_window7_224``, ``efficientnet_b3``).
        out_indices (tuple[int]): feature stages fed to the FPN (negative counts from the last).
        out_channels (int): FPN width.
        extra_blocks: torchvision FPN extra block (``LastLevelMaxPool`` / ``LastLevelP6P7``).
        weights (str | None): local timm checkpoint of the classification model, loaded strictly.
        pretrained (bool): the structure of a pretrained backbone, as torchvision builds one:
            every BatchNorm frozen and only the last ``trainable_layers`` feature levels trained
            (also without ``weights`` when a checkpoint's state dict is loaded next).
        trainable_layers (int): feature levels, from the deepest, that train when ``pretrained``.
        kwargs: extra ``timm.create_model`` arguments.

    ``forward(images [B, 3, H, W]) -> OrderedDict[str, Tensor[B, out_channels, h, w]]``; the images
    come normalised (and padded with 0) by torchvision's ``GeneralizedRCNNTransform``.
    """

    def __init__(self, name: str, out_indices, out_channels: int, extra_blocks, weights=None, *, pretrained: bool = False,
                 trainable_layers: int = 3, kwargs=None):
        super().__init__(name, out_indices, weights, freeze_bn=pretrained, trainable=trainable_layers if pretrained else None,
                         **(kwargs or {}))
        self.fpn = FeaturePyramidNetwork(self.channels, out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, images):
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(super().forward(images))))


def _check_file(path, key: str):
    if not Path(path).is_file():
        raise SmallboxError(f"{key}: no such file {path} (weights are read from local files only)")


def _extra_blocks(arch: str, channels: int):
    # Faster R-CNN adds a max-pooled level; RetinaNet P6/P7 from P5 (torchvision's choices).
    return LastLevelMaxPool() if arch == "faster_rcnn" else LastLevelP6P7(channels, channels)


def build_backbone(m: dict, read_weights: bool = True) -> nn.Module:
    """The FPN backbone of the ``model`` settings; ``.out_channels`` set. With ``read_weights``
    false the structure is the same (frozen BN where weights were named) but no file is read."""
    arch, name = m["arch"], m["backbone"]
    if name.startswith(TIMM_PREFIX):
        default = (-4, -3, -2, -1) if arch == "faster_rcnn" else (-3, -2, -1)
        try:
            return TimmFPNBackbone(name[len(TIMM_PREFIX):], m["out_indices"] or default, m["fpn_channels"],
                                   _extra_blocks(arch, m["fpn_channels"]), m["backbone_weights"] if read_weights else None,
                                   pretrained=bool(m["backbone_weights"] or m["weights"]),
                                   trainable_layers=m["trainable_layers"], kwargs=m["backbone_kwargs"])
        except SmallboxError as e:
            raise SmallboxError(f"model.backbone={name}, model.backbone_weights={m['backbone_weights']}: {e}") from None
    return _resnet_fpn(m, read_weights)


def _resnet_fpn(m: dict, read_weights: bool) -> nn.Module:
    name, arch = m["backbone"], m["arch"]
    if not (name.startswith(("resnet", "resnext", "wide_resnet")) and hasattr(tv_resnet, name)):
        raise SmallboxError(f"model.backbone: {name!r} is neither a torchvision ResNet (resnet50, ...) nor timm:<name>")
    # As torchvision: frozen BN and `trainable_layers` stages with ImageNet or detector weights
    # (BN statistics of batches of 2-4 images would spoil them), BN and all stages trained without.
    pretrained = bool(m["backbone_weights"] or m["weights"])
    norm = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    body = getattr(tv_resnet, name)(weights=None, norm_layer=norm, **m["backbone_kwargs"])
    if m["backbone_weights"] and read_weights:
        _check_file(m["backbone_weights"], "model.backbone_weights")
        body.load_state_dict(torch.load(m["backbone_weights"], map_location="cpu", weights_only=True))
    freeze_resnet(body, m["trainable_layers"] if pretrained else 5)
    returned = [1, 2, 3, 4] if arch == "faster_rcnn" else [2, 3, 4]
    # torchvision's _resnet_fpn_extractor, with the FPN width as a setting.
    stage2 = body.inplanes // 8
    return BackboneWithFPN(body, {f"layer{k}": str(i) for i, k in enumerate(returned)},
                           [stage2 * 2 ** (k - 1) for k in returned], m["fpn_channels"],
                           extra_blocks=_extra_blocks(arch, m["fpn_channels"]))


def freeze_resnet(body: nn.Module, trainable: int) -> None:
    """Train only the last ``trainable`` stages (0-5), as torchvision does."""
    if not 0 <= trainable <= 5:
        raise SmallboxError(f"model.trainable_layers must be 0-5, got {trainable}")
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable] + (["bn1"] if trainable == 5 else [])
    for name, p in body.named_parameters():
        if not any(name.startswith(layer) for layer in train):
            p.requires_grad_(False)


def num_levels(backbone: nn.Module) -> int:
    """Feature maps the backbone returns (FPN levels + extra blocks)."""
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        n = len(backbone(torch.zeros(1, 3, 64, 64)))
        backbone.train(was)
    return n


# The first FPN level's anchor where a recipe leaves model.anchor_sizes unset: one octave below
# torchvision's 32 px (a 16-24 px box overlaps a 32 px anchor with IoU 0.25-0.56, under the RPN's 0.7,
# so it would train from its one best anchor only), as every recipe of recipes/tv sets it.
FIRST_ANCHOR = 16
TORCHVISION_FIRST_ANCHOR = 32  # a detector trained with torchvision's anchors keeps them


def default_anchor_sizes(m: dict, levels: int, first: int | None = None) -> list[int]:
    """``model.anchor_sizes`` when unset: ``first * 2**level``; ``first`` defaults to 16 px, or to
    torchvision's 32 px when ``model.weights`` loads a detector trained with those."""
    first = first or (TORCHVISION_FIRST_ANCHOR if m.get("weights") else FIRST_ANCHOR)
    return [first * 2**i for i in range(levels)]


def anchor_generator(m: dict, levels: int, unset_first: int | None = None) -> AnchorGenerator:
    """One base size per level (``model.anchor_sizes``, else :func:`default_anchor_sizes`);
    RetinaNet adds torchvision's three octave scales per level."""
    base = m["anchor_sizes"] or default_anchor_sizes(m, levels, unset_first)
    if len(base) != levels:
        raise SmallboxError(f"model.anchor_sizes: {len(base)} sizes given for {levels} feature levels")
    if m["arch"] == "retinanet":
        sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in base)
    else:
        sizes = tuple((int(x),) for x in base)
    return AnchorGenerator(sizes, (tuple(float(a) for a in m["aspect_ratios"]),) * levels)


def build_model(m: dict, num_classes: int, size_weights: BoxSizeWeights | None = None, read_weights: bool = True,
                unset_anchor_first: int | None = None) -> nn.Module:
    """Faster R-CNN or RetinaNet for ``num_classes`` object classes (background added here).

    Args:
        m: the recipe's ``model`` settings.
        size_weights: switch the box-regression loss to the size-weighted one.
        read_weights: read the weight files the settings name (false when a checkpoint's state
            dict is loaded next).
        unset_anchor_first: the first anchor size where ``anchor_sizes`` is unset (default: see
            :func:`default_anchor_sizes`).
    """
    if m["arch"] not in ARCHS:
        raise SmallboxError(f"model.arch must be one of {ARCHS}, got {m['arch']!r}")
    backbone = build_backbone(m, read_weights)
    anchors = anchor_generator(m, num_levels(backbone), unset_anchor_first)
    sizes = dict(min_size=m["min_size"], max_size=m["max_size"])
    if m["arch"] == "faster_rcnn":
        model = FasterRCNN(backbone, num_classes + 1, rpn_anchor_generator=anchors,
                           rpn_fg_iou_thresh=m["rpn_fg_iou_thresh"], rpn_bg_iou_thresh=m["rpn_bg_iou_thresh"],
                           box_fg_iou_thresh=m["box_fg_iou_thresh"], box_bg_iou_thresh=m["box_bg_iou_thresh"],
                           box_nms_thresh=m["nms_thresh"], box_score_thresh=m["score_thresh"],
                           box_detections_per_img=m["detections_per_img"],
                           **{k: m[k] for k in RPN_SAMPLING}, **sizes)
    else:
        model = RetinaNet(backbone, num_classes + 1, anchor_generator=anchors, fg_iou_thresh=m["fg_iou_thresh"], bg_iou_thresh=m["bg_iou_thresh"],
                          nms_thresh=m["nms_thresh"], score_thresh=m["score_thresh"],
                          detections_per_img=m["detections_per_img"], topk_candidates=m["topk_candidates"], **sizes)
    if m["weights"] and read_weights:
        load_detector_weights(model, m["weights"], "model.weights")
    if size_weights is not None:
        enable_size_weights(model, size_weights)
    return model


def load_detector_weights(model: nn.Module, path, key: str) -> list[str]:
    """Load a detector state dict (a plain one, or a smallbox checkpoint's ``model``), skipping
    tensors whose shape differs (e.g. another number of classes). Returns the skipped keys."""
    _check_file(path, key)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise SmallboxError(f"{key}: {path} holds no weights of this model ({len(state)} tensors, none match)")
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def anchor_sizes_of(model: nn.Module) -> list[int]:
    """The base anchor size per level a built model uses (what a checkpoint's recipe records)."""
    generator = model.rpn.anchor_generator if hasattr(model, "rpn") else model.anchor_generator
    return [int(sizes[0]) for sizes in generator.sizes]
