"""Size-weighted box loss for Ultralytics detection heads (YOLOv8/11 DFL heads and YOLO26
end-to-end heads).

Configured by a top-level ``size_weighting`` key of the model YAML (so it is saved in every
checkpoint); the rule and its settings are :mod:`smallbox.adapters.size_weighting`'s.

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

from functools import partial

import torch
from ultralytics.utils import LOGGER
from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss

from ..size_weighting import SizeWeighting


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
