"""Size-weighted box loss for Ultralytics detection heads (YOLOv8/11 DFL heads and YOLO26
end-to-end heads).

Configured by a top-level key of the model YAML (so it is saved in every checkpoint)::

    size_weighting:
      thresholds: [1024, 9216]    # px² of the ORIGINAL image; also "coco", ["32^2", "96^2"], or
                                  # "fit": the data YAML's fitted set (resolved by the trainer)
      weights: [3.0, 1.5, 1.0]    # small, medium, large
      renorm: true                # keep the sum of box weights over foreground anchors

What it does, and how it differs from the report's ``SizeWeightedLoss`` (which took "areas" from
encoded regression deltas and averaged over all rows, ignoring the loss's normalisation):

* The weight belongs to a ground-truth box and is looked up from its size bucket
  (:class:`smallbox.datasets.SizeBuckets`, the same object the EDA, splits and evaluator use).
* Ultralytics' ``BboxLoss`` weights each foreground anchor's IoU and DFL (L1 for ``reg_max=1``
  heads) terms by ``w_a = sum(target_scores[a])`` and divides by ``target_scores_sum``. We
  multiply ``w_a`` by the size weight ``s_a`` of the box assigned to anchor ``a``; the divisor
  stays Ultralytics' own, and the classification loss is untouched.
* ``renorm``: scale all ``s_a`` of the batch by ``sum(w_a) / sum(w_a * s_a)`` (over foreground
  anchors), so the box loss keeps its overall scale and only the share of small boxes changes;
  without it, weights > 1 also raise the effective box gain (``box=``/``dfl=``).
* With all weights 1.0 the loss is exactly Ultralytics' ``v8DetectionLoss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from ultralytics.utils import LOGGER
from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss

from ..datasets.buckets import BUCKET_NAMES, SizeBuckets
from ..datasets.errors import SmallboxError

CONFIG_KEY = "size_weighting"


@dataclass(frozen=True)
class SizeWeighting:
    """Per-bucket weights of the box loss.

    Args:
        buckets (SizeBuckets): thresholds in original-image px².
        weights (tuple[float, float, float]): weight of small, medium, large boxes.
        renorm (bool): keep the sum of box weights over foreground anchors unchanged.
    """

    buckets: SizeBuckets
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    renorm: bool = True

    @classmethod
    def from_config(cls, cfg, source: str = "model YAML") -> "SizeWeighting":
        """Parse the ``size_weighting`` mapping; a SmallboxError names the bad entry."""
        where = f"{source}: {CONFIG_KEY}"
        if not isinstance(cfg, dict):
            raise SmallboxError(f"{where} must be a mapping with thresholds, weights, renorm; got {cfg!r}")
        unknown = set(cfg) - {"thresholds", "weights", "renorm"}
        if unknown:
            raise SmallboxError(f"{where}: unknown key(s) {sorted(unknown)} (expected thresholds, weights, renorm)")
        name = named_thresholds({CONFIG_KEY: cfg})
        if name is not None:
            raise SmallboxError(f"{where}.thresholds: {name!r} names a bucket set of the data YAML; it is "
                                "resolved when `smallbox yolo train` builds the model (data=... written by smallbox convert)")
        buckets = _parse_thresholds(cfg.get("thresholds", "coco"), where)
        weights = cfg.get("weights")
        try:
            weights = tuple(float(w) for w in weights)
        except (TypeError, ValueError):
            raise SmallboxError(f"{where}.weights must be three numbers (small, medium, large), got {weights!r}") from None
        if len(weights) != 3 or not all(math.isfinite(w) and w > 0 for w in weights):
            raise SmallboxError(f"{where}.weights must be three positive numbers (small, medium, large), got {list(weights)}")
        renorm = cfg.get("renorm", True)
        if not isinstance(renorm, bool):
            raise SmallboxError(f"{where}.renorm must be true or false, got {renorm!r}")
        return cls(buckets, weights, renorm)

    @classmethod
    def from_model_yaml(cls, model_yaml: dict) -> "SizeWeighting | None":
        """The weighting of a model YAML dict, or None when it has no ``size_weighting``."""
        cfg = model_yaml.get(CONFIG_KEY)
        if cfg is None:
            return None
        return cls.from_config(cfg, source=str(model_yaml.get("yaml_file", "model YAML")))

    def to_dict(self) -> dict:
        return {"thresholds": list(self.buckets.thresholds), "weights": list(self.weights), "renorm": self.renorm}

    def describe(self) -> str:
        bounds = ("0", *(f"{math.sqrt(t):g}²" for t in self.buckets.thresholds), "inf")
        parts = [f"{n} [{bounds[i]}, {bounds[i + 1]}) x{w:g}" for i, (n, w) in enumerate(zip(BUCKET_NAMES, self.weights))]
        return ", ".join(parts) + (" (renormalised)" if self.renorm else "")

    def box_weights(self, area_orig: torch.Tensor) -> torch.Tensor:
        """Weight of each box from its area in original-image px²; same shape as ``area_orig``.
        Bucket ``i`` when ``thresholds[i-1] <= area < thresholds[i]``, as SizeBuckets.index."""
        thresholds = torch.tensor(self.buckets.thresholds, dtype=area_orig.dtype, device=area_orig.device)
        weights = torch.tensor(self.weights, dtype=area_orig.dtype, device=area_orig.device)
        return weights[torch.bucketize(area_orig, thresholds, right=True)]


def named_thresholds(model_yaml: dict) -> str | None:
    """The bucket set name in ``size_weighting.thresholds`` (e.g. ``"fit"``), if it holds one."""
    cfg = model_yaml.get(CONFIG_KEY)
    name = cfg.get("thresholds") if isinstance(cfg, dict) else None
    return name if isinstance(name, str) and name != "coco" and "," not in name else None


def resolve_named_thresholds(model_yaml: dict, data: dict) -> dict:
    """``size_weighting.thresholds: fit`` (any bucket set named in the data YAML written by
    ``smallbox convert``) -> that set's two numbers, so the loss weights the very buckets the
    evaluator reports, and the checkpoint records numbers that no longer need the data.

    Returns ``model_yaml`` itself when there is nothing to resolve, else a copy.
    """
    name = named_thresholds(model_yaml)
    if name is None:
        return model_yaml
    cfg = model_yaml[CONFIG_KEY]
    section = data.get("smallbox") if isinstance(data.get("smallbox"), dict) else {}
    sets = {b["name"]: list(b["thresholds"]) for b in section.get("buckets", [])}
    if name not in sets:
        where = f"{model_yaml.get('yaml_file', 'model YAML')}: {CONFIG_KEY}.thresholds"
        known = ", ".join(sets) or "none: write it with `smallbox convert`"
        raise SmallboxError(f"{where}: {name!r} is not a size bucket set of the data YAML (it has: {known})")
    return {**model_yaml, CONFIG_KEY: {**cfg, "thresholds": sets[name]}}


def _parse_thresholds(value, where: str) -> SizeBuckets:
    if isinstance(value, str):
        value = [value]
    try:
        return SizeBuckets.parse(",".join(str(v) for v in value))
    except (TypeError, SmallboxError) as e:
        raise SmallboxError(f"{where}.thresholds: {e}") from None


def input_scale(batch: dict, input_hw, batch_size: int, device) -> torch.Tensor | None:
    """Per-image ratio network-input px / original-image px; shape ``(B,)``, or None when the
    batch carries no ``ori_shape`` (then thresholds apply to input px).

    Ultralytics loads an image with its long side resized to ``imgsz`` (ratio
    ``r = imgsz / max(h0, w0)``) and letterboxes it into the ``(H, W)`` input without further
    scaling, so ``r = min(H / h0, W / w0)`` and an original area ``a`` becomes ``a * r²`` at the
    input. A mosaic carries only its first tile's ``ori_shape``: exact when the dataset's
    images share one size, an approximation otherwise. The random affine ``scale``
    augmentation is deliberately not undone: a box enlarged by it is weighted by the size it
    now appears with, which is the size the network has to detect.
    """
    shapes = batch.get("ori_shape")
    if shapes is None or len(shapes) != batch_size:
        return None
    hw0 = torch.tensor([[float(s[0]), float(s[1])] for s in shapes], device=device)
    hw = torch.as_tensor([float(input_hw[0]), float(input_hw[1])], device=device)
    return (hw / hw0).min(dim=1).values


class SizeWeightedBboxLoss(BboxLoss):
    """``BboxLoss`` whose per-anchor weights are multiplied by the size weight of the assigned
    ground-truth box. ``image_scale`` (``(B,)``, input px per original px) is set by the
    criterion before each call; None means 1."""

    def __init__(self, reg_max: int, weighting: SizeWeighting):
        super().__init__(reg_max)
        self.weighting = weighting
        self.image_scale = None

    def anchor_weights(self, target_bboxes, target_scores, fg_mask, stride) -> torch.Tensor:
        """Size weight per anchor, ``(B, A)``.

        Args:
            target_bboxes (B, A, 4): assigned boxes, xyxy in grid units of each anchor's level.
            target_scores (B, A, nc): assigned soft class targets (their sum is Ultralytics' weight).
            fg_mask (B, A): foreground anchors.
            stride (A, 1): stride of each anchor's level.
        """
        wh_input = (target_bboxes[..., 2:] - target_bboxes[..., :2]) * stride.view(1, -1, 1)
        area_input = wh_input[..., 0] * wh_input[..., 1]
        if self.image_scale is not None:
            area_input = area_input / self.image_scale.view(-1, 1).to(area_input.dtype) ** 2
        weights = self.weighting.box_weights(area_input)
        if self.weighting.renorm:
            base = target_scores.sum(-1) * fg_mask
            weighted = (base * weights).sum()
            if weighted > 0:
                weights = weights * (base.sum() / weighted)
        return weights

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask, imgsz, stride):
        """Same arguments as ``BboxLoss.forward``; returns (iou loss, dfl or l1 loss)."""
        weights = self.anchor_weights(target_bboxes, target_scores, fg_mask, stride)
        target_scores = target_scores * weights.unsqueeze(-1).to(target_scores.dtype)
        return super().forward(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask, imgsz, stride)


class SizeWeightedDetectionLoss(v8DetectionLoss):
    """``v8DetectionLoss`` with :class:`SizeWeightedBboxLoss` as its box term."""

    def __init__(self, model, weighting: SizeWeighting, tal_topk: int = 10, tal_topk2: int | None = None):
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.weighting = weighting
        self.bbox_loss = SizeWeightedBboxLoss(self.reg_max, weighting).to(self.device)
        self._warned = False

    def loss(self, preds: dict, batch: dict):
        """Set the per-image input scale from the batch, then Ultralytics' loss."""
        batch_size = preds["boxes"].shape[0]
        input_hw = [int(n) * int(self.stride[0]) for n in preds["feats"][0].shape[2:]]
        scale = input_scale(batch, input_hw, batch_size, self.device)
        if scale is None and not self._warned:
            LOGGER.warning("smallbox size weighting: batch has no 'ori_shape'; thresholds apply to network-input px²")
            self._warned = True
        self.bbox_loss.image_scale = scale
        return super().loss(preds, batch)


def build_criterion(model, weighting: SizeWeighting):
    """The size-weighted criterion for ``model``: wrapped in ``E2ELoss`` for end-to-end
    (YOLO26-style, one-to-one) heads, as ``DetectionModel.init_criterion`` does."""
    LOGGER.info(f"smallbox size-weighted box loss: {weighting.describe()}")
    loss_fn = partial(SizeWeightedDetectionLoss, weighting=weighting)
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return E2ELoss(model, loss_fn=loss_fn)
    return loss_fn(model)
