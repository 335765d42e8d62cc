"""Size-weighted box loss and NWD (normalized Gaussian Wasserstein distance) for Ultralytics
detection heads (YOLOv8/11 DFL heads and YOLO26 end-to-end heads).

NWD (:mod:`smallbox.adapters.nwd`, a ``loss: {nwd: ...}`` key of the model YAML) mixes into the
task-aligned assigner's overlap (:class:`NWDAssigner`: alignment metric and target scores) and
into the box term (:class:`NWDBboxLoss`: ``(1 - r)(1 - CIoU) + r(1 - NWD)``, weighted like the
IoU term). Boxes are compared in network-input pixels in both places, where ``C`` is defined.
With ``ratio: 0`` both are Ultralytics' exactly.

Configured by a top-level ``size_weighting`` key of the model YAML (so it is saved in every
checkpoint); the rule and its settings are :mod:`smallbox.adapters.size_weighting`'s.

What it does, and how it differs from the report's ``SizeWeightedLoss`` (which took "areas" from
encoded regression deltas and averaged over all rows, ignoring the loss's normalisation):

* The weight belongs to a ground-truth box and is looked up from the bucket the evaluator gives
  it: the box's ORIGINAL area (``batch["orig_area"]``, carried through Ultralytics' augmentation
  by :mod:`.train_data`; the trainer builds that dataset whenever the model weights by
  ``original``), through :class:`smallbox.datasets.SizeBuckets`' rule. The assigner tells which
  ground-truth box each foreground anchor got (``target_gt_idx``); the anchor takes that box's
  weight. Nothing is recomputed from the augmented box.
* Ultralytics' ``BboxLoss`` weights each foreground anchor's IoU and DFL (L1 for ``reg_max=1``
  heads) terms by ``w_a = sum(target_scores[a])`` and divides by ``target_scores_sum``. We
  multiply ``w_a`` by the size weight ``s_a``; the divisor stays Ultralytics' own, and the
  classification loss is untouched.
* ``renorm``: scale all ``s_a`` of the batch by ``sum(w_a) / sum(w_a * s_a)`` (over foreground
  anchors; :func:`~smallbox.adapters.size_weighting.renorm_factor`), so the box loss keeps its
  overall scale and only the buckets' shares change.
* ``by: input``, and batches without ``orig_area`` (the validation loader's, for the val loss:
  no random scale there, so both agree up to the label files' rounding), bucket a box by its
  area at the network input divided by the letterbox ratio (:func:`input_scale`).
* With all weights 1.0 the loss is exactly Ultralytics' ``v8DetectionLoss``.
"""

from __future__ import annotations

from functools import partial

import torch
from ultralytics.utils import LOGGER
from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner

from ..nwd import NWDConfig
from ..size_weighting import SizeWeighting, renorm_factor
from .train_data import AREA_KEY

_TOLD: set[str] = set()  # notes logged once per process (the EMA and resumed criteria would repeat them)


def input_scale(batch: dict, input_hw, batch_size: int, device) -> torch.Tensor | None:
    """Per-image ratio network-input px / original-image px; shape ``(B,)``, or None when the
    batch carries no ``ori_shape`` (then thresholds apply to input px).

    Ultralytics loads an image with its long side resized to ``imgsz`` (ratio
    ``r = imgsz / max(h0, w0)``) and letterboxes it into the ``(H, W)`` input without further
    scaling, so ``r = min(H / h0, W / w0)`` and an original area ``a`` becomes ``a * r²`` at the
    input. A mosaic carries only its first tile's ``ori_shape``, and the random affine ``scale``
    is not undone: this is the size the network sees, not the evaluator's (``by: input``).
    """
    shapes = batch.get("ori_shape")
    if shapes is None or len(shapes) != batch_size:
        return None
    hw0 = torch.tensor([[float(s[0]), float(s[1])] for s in shapes], device=device)
    hw = torch.as_tensor([float(input_hw[0]), float(input_hw[1])], device=device)
    return (hw / hw0).min(dim=1).values


def per_image(values: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``values[N]`` (one per ``batch["cls"]`` row) laid out as ``v8DetectionLoss.preprocess``
    lays out the ground truth: image ``i``'s ``j``-th row at ``[i, j]``; shape ``(B, max rows)``,
    zeros where an image has fewer rows. Rows are grouped by image, as ``collate_fn`` makes them."""
    batch_idx = batch_idx.long()
    counts = torch.bincount(batch_idx, minlength=batch_size)
    out = values.new_zeros(batch_size, int(counts.max()) if len(values) else 0)
    if len(values):
        offsets = torch.cumsum(counts, 0) - counts
        out[batch_idx, torch.arange(len(values), device=values.device) - offsets[batch_idx]] = values
    return out


class NWDAssigner(TaskAlignedAssigner):
    """``TaskAlignedAssigner`` whose overlap (CIoU, clamped at 0) is mixed with NWD: it ranks the
    candidates (alignment metric ``score^alpha * overlap^beta``), settles anchors claimed by two
    boxes, and scales the soft class targets. Boxes arrive in network-input px."""

    def __init__(self, nwd: NWDConfig, **kwargs):
        super().__init__(**kwargs)
        self.nwd = nwd

    @classmethod
    def like(cls, assigner: TaskAlignedAssigner, nwd: NWDConfig) -> "NWDAssigner":
        return cls(nwd, topk=assigner.topk, num_classes=assigner.num_classes, alpha=assigner.alpha, beta=assigner.beta,
                   stride=assigner.stride, eps=assigner.eps, topk2=assigner.topk2)

    def iou_calculation(self, gt_bboxes, pd_bboxes):
        return self.nwd.mix(super().iou_calculation(gt_bboxes, pd_bboxes), gt_bboxes, pd_bboxes)


class NWDBboxLoss(BboxLoss):
    """``BboxLoss`` whose IoU term is ``(1 - r)(1 - CIoU) + r(1 - NWD)`` when ``nwd`` is set
    (else exactly ``BboxLoss``); each foreground anchor weighted as Ultralytics weights it."""

    def __init__(self, reg_max: int, nwd: NWDConfig | None = None):
        super().__init__(reg_max)
        self.nwd = nwd

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask,
                imgsz, stride):
        loss_iou, loss_dfl = super().forward(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores,
                                             target_scores_sum, fg_mask, imgsz, stride)
        if self.nwd is None:
            return loss_iou, loss_dfl
        fg = fg_mask.nonzero(as_tuple=True)
        weight = target_scores[fg].sum(-1)
        scale = stride[fg[1]].view(-1, 1)  # grid units -> input px, where C is defined
        from ..nwd import nwd

        loss_nwd = ((1.0 - nwd(pred_bboxes[fg] * scale, target_bboxes[fg] * scale, float(self.nwd.constant))) * weight).sum() \
            / target_scores_sum
        r = self.nwd.ratio
        return (1 - r) * loss_iou + r * loss_nwd, loss_dfl


class SizeWeightedBboxLoss(NWDBboxLoss):
    """``BboxLoss`` whose per-anchor weights are multiplied by the size weight of the assigned
    ground-truth box. The criterion sets, before each call, either ``gt_weights`` (``(B, A)``,
    the weight of each anchor's assigned box, from its original area) or, for ``by: input``,
    ``image_scale`` (``(B,)``, input px per original px; None means 1)."""

    def __init__(self, reg_max: int, weighting: SizeWeighting, nwd: NWDConfig | None = None):
        super().__init__(reg_max, nwd)
        self.weighting = weighting
        self.gt_weights = None
        self.image_scale = None

    def anchor_weights(self, target_bboxes, target_scores, fg_mask, stride) -> torch.Tensor:
        """Size weight per anchor, ``(B, A)``, renormalised when ``renorm``.

        Args:
            target_bboxes (B, A, 4): assigned boxes, xyxy in grid units of each anchor's level.
            target_scores (B, A, nc): assigned soft class targets (their sum is Ultralytics' weight).
            fg_mask (B, A): foreground anchors.
            stride (A, 1): stride of each anchor's level.
        """
        weights = self.gt_weights
        if weights is None:
            wh_input = (target_bboxes[..., 2:] - target_bboxes[..., :2]) * stride.view(1, -1, 1)
            area = wh_input[..., 0] * wh_input[..., 1]
            if self.image_scale is not None:
                area = area / self.image_scale.view(-1, 1).to(area.dtype) ** 2
            weights = self.weighting.box_weights(area)
        weights = weights.to(target_scores.dtype)
        if self.weighting.renorm:
            weights = weights * renorm_factor(target_scores.sum(-1) * fg_mask, weights)
        return weights

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask, imgsz, stride):
        """Same arguments as ``BboxLoss.forward``; returns (iou loss, dfl or l1 loss)."""
        weights = self.anchor_weights(target_bboxes, target_scores, fg_mask, stride)
        target_scores = target_scores * weights.unsqueeze(-1)
        return super().forward(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask, imgsz, stride)


class SmallboxDetectionLoss(v8DetectionLoss):
    """``v8DetectionLoss`` with smallbox's options: a size-weighted box term
    (:class:`SizeWeightedBboxLoss`; a forward hook on the assigner turns each foreground
    anchor's ``target_gt_idx`` into its box's weight) and NWD in the assigner and / or the box
    term. With neither it is Ultralytics' loss."""

    def __init__(self, model, weighting: SizeWeighting | None = None, nwd: NWDConfig | None = None, tal_topk: int = 10,
                 tal_topk2: int | None = None):
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.weighting = weighting
        if nwd is not None and nwd.assigner:
            self.assigner = NWDAssigner.like(self.assigner, nwd)
        box_nwd = nwd if nwd is not None and nwd.box else None
        self.bbox_loss = (SizeWeightedBboxLoss(self.reg_max, weighting, box_nwd) if weighting is not None
                          else NWDBboxLoss(self.reg_max, box_nwd)).to(self.device)
        if weighting is not None:
            self.assigner.register_forward_hook(self._weights_of_assigned_boxes)
        self._gt_weights = None  # (B, max boxes) of the batch in progress

    def loss(self, preds: dict, batch: dict):
        """Prepare the weights of the batch's boxes (or the input scale), then Ultralytics' loss."""
        if self.weighting is None:
            return super().loss(preds, batch)
        batch_size = preds["boxes"].shape[0]
        self._gt_weights, self.bbox_loss.gt_weights, self.bbox_loss.image_scale = None, None, None
        areas = batch.get(AREA_KEY) if self.weighting.by == "original" else None
        if areas is not None:
            areas = areas.to(self.device, torch.float32 if self.device.type == "mps" else torch.float64)
            self._gt_weights = per_image(self.weighting.box_weights(areas), batch["batch_idx"].to(self.device), batch_size)
        else:
            if self.weighting.by == "original":
                _tell_once("no_area", f"smallbox size weighting: a batch without '{AREA_KEY}' (the validation loader's, "
                                      "for val/box_loss): its boxes are bucketed by network-input area / letterbox ratio")
            input_hw = [int(n) * int(self.stride[0]) for n in preds["feats"][0].shape[2:]]
            self.bbox_loss.image_scale = input_scale(batch, input_hw, batch_size, self.device)
            if self.bbox_loss.image_scale is None:
                _tell_once("no_shape", "smallbox size weighting: batch has no 'ori_shape'; thresholds apply to network-input px²")
        return super().loss(preds, batch)

    def _weights_of_assigned_boxes(self, assigner, args, outputs):
        """Forward hook of the assigner: ``outputs[4]`` is ``target_gt_idx`` ``(B, A)``."""
        if self._gt_weights is None:
            return
        gt_idx = outputs[4]
        if self._gt_weights.shape[1] == 0:  # no boxes in the batch: no foreground either
            self.bbox_loss.gt_weights = torch.ones_like(gt_idx, dtype=self._gt_weights.dtype)
        else:
            self.bbox_loss.gt_weights = self._gt_weights.gather(1, gt_idx.long())


SizeWeightedDetectionLoss = SmallboxDetectionLoss  # the name earlier code and tests know


def _tell_once(key: str, message: str) -> None:
    if key not in _TOLD:
        _TOLD.add(key)
        LOGGER.info(message)


def build_criterion(model, weighting: SizeWeighting | None, nwd: NWDConfig | None = None):
    """smallbox's criterion for ``model``: wrapped in ``E2ELoss`` for end-to-end (YOLO26-style,
    one-to-one) heads, as ``DetectionModel.init_criterion`` does."""
    if weighting is not None:
        _tell_once(f"sw{weighting}", f"smallbox size-weighted box loss: {weighting.describe()}")
    if nwd is not None:
        _tell_once(f"nwd{nwd}", f"smallbox: {nwd.describe()}")
    loss_fn = partial(SmallboxDetectionLoss, weighting=weighting, nwd=nwd)
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return E2ELoss(model, loss_fn=loss_fn)
    return loss_fn(model)
