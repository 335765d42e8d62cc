"""Size-weighted box regression for torchvision's Faster R-CNN ROI head and RetinaNet head.

Each positive sample's box-regression term is multiplied by the weight of the size bucket of the
ground-truth box it is MATCHED to; the bucket comes from that box's ORIGINAL area -- the json
``area`` the evaluator buckets by (``w*h`` of the bbox where the json has none), carried in each
target as ``orig_area`` through the augmentation -- never from the encoded regression targets,
and never from the box after the model's resize (a 20x20 box of a 2048 image resized to 1024 is
still a 400 px² box). The rule and its settings (thresholds, weights, ``renorm``) are
:mod:`smallbox.adapters.size_weighting`'s, shared with the YOLO path. The normaliser is
torchvision's own (sampled ROIs per batch, foreground anchors per image), so all weights 1.0 give
torchvision's loss exactly. Without ``renorm`` weights above 1 add to the loss rather than
rescale it (as ``weight`` with an unchanged ``avg_factor`` in MMDetection); with it, one factor
per batch keeps the sum of the positives' weights, each counted with its coefficient in the
unweighted loss (1 per positive ROI; 1 / foreground anchors of its image for RetinaNet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.retinanet import RetinaNetRegressionHead, _sum
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from ...datasets import SizeBuckets
from ...errors import SmallboxError
from ..size_weighting import SizeWeighting, renorm_factor

TARGET_AREA_KEY = "orig_area"


class BoxSizeWeights(nn.Module):
    """Weight of a box by its size bucket.

    Args:
        buckets (SizeBuckets): thresholds in original-image px².
        weights (tuple[float, float, float]): for small, medium, large.
        renorm (bool): one factor per batch keeps the coefficient-weighted sum of the positives'
            weights (:mod:`smallbox.adapters.size_weighting`). A recipe's ``loss.size_weights``
            defaults to true, as the YOLO path (:meth:`from_weighting`).
    """

    def __init__(self, buckets: SizeBuckets, weights, renorm: bool = False):
        super().__init__()
        weights = [float(w) for w in weights]
        if len(weights) != len(buckets.names) or any(w < 0 for w in weights):
            raise SmallboxError(f"size weights need {len(buckets.names)} non-negative numbers, one per size range "
                                f"({', '.join(buckets.names)}), got {weights}")
        self.buckets = buckets
        self.renorm = bool(renorm)
        # Not persistent: checkpoints with and without size weights keep the same keys.
        self.register_buffer("thresholds", torch.tensor(buckets.thresholds, dtype=torch.float64), persistent=False)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32), persistent=False)

    @classmethod
    def from_weighting(cls, weighting: SizeWeighting) -> BoxSizeWeights:
        if weighting.by != "original":
            raise SmallboxError(f"size weighting `by: {weighting.by}`: the torchvision path weights by the original area only "
                                "(by: original)")
        return cls(weighting.buckets, weighting.weights, weighting.renorm)

    def forward(self, areas: Tensor) -> Tensor:
        """``areas [N]`` (px² of the original image) -> weights ``[N]``; the bucket rule of
        ``SizeBuckets.index`` (``thresholds[i-1] <= a < thresholds[i]``)."""
        index = torch.bucketize(areas.to(self.thresholds), self.thresholds, right=True)
        return self.weights[index]

    def matched(self, targets: list[dict], matched_idxs: list[Tensor], per_image: bool = False) -> list[Tensor]:
        """Per image, the weight of the ground truth each sample is matched to: ``[M_i]``.
        Unmatched samples (index < 0, or images without boxes) get weight 1; they carry no box loss.
        With ``renorm`` all are multiplied by one factor over the batch, each matched sample
        counted with coefficient 1, or ``1 / (matched samples of its image)`` when ``per_image``
        (RetinaNet's per-image normaliser)."""
        out = []
        for t, idx in zip(targets, matched_idxs):
            if TARGET_AREA_KEY not in t:
                raise KeyError(f"size-weighted loss needs targets[{TARGET_AREA_KEY!r}] (original-image box areas)")
            areas = t[TARGET_AREA_KEY]
            w = torch.ones(idx.shape, dtype=torch.float32, device=idx.device)
            valid = idx >= 0
            if areas.numel() and valid.any():
                w[valid] = self(areas[idx[valid]]).to(w.device)
            out.append(w)
        if self.renorm and out:
            coef = [(idx >= 0).to(w.dtype) / (max(1, int((idx >= 0).sum())) if per_image else 1) for idx, w in zip(matched_idxs, out)]
            k = renorm_factor(torch.cat(coef), torch.cat(out))
            out = [w * k for w in out]
        return out

    def extra_repr(self) -> str:
        return f"buckets={self.buckets.describe()}, weights={self.weights.tolist()}, renorm={self.renorm}"


def size_weighted_fastrcnn_loss(class_logits, box_regression, labels, regression_targets, box_weights):
    """torchvision's ``fastrcnn_loss`` with per-ROI box weights.

    Args:
        class_logits (Tensor[N, K+1]), box_regression (Tensor[N, (K+1)*4]): over all sampled ROIs.
        labels (list[Tensor[N_i]]), regression_targets (list[Tensor[N_i, 4]]), box_weights
            (list[Tensor[N_i]]): per image.
    Returns:
        (classification loss, box loss): the box loss is ``sum_i w_i * smoothL1_i / N``.
    """
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    box_weights = torch.cat(box_weights, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels)
    pos = torch.where(labels > 0)[0]
    n, _ = class_logits.shape
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    per_coord = F.smooth_l1_loss(box_regression[pos, labels[pos]], regression_targets[pos], beta=1 / 9, reduction="none")
    box_loss = (per_coord * box_weights[pos, None].to(per_coord.dtype)).sum() / labels.numel()
    return classification_loss, box_loss


class SizeWeightedRoIHeads(RoIHeads):
    """``RoIHeads`` (boxes only) whose box loss is size-weighted. Made from a built model's heads
    by :func:`enable_size_weights`, so the state-dict keys stay torchvision's."""

    size_weights: BoxSizeWeights

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        # torchvision clamps matched indices of background ROIs to 0: only positives are weighted.
        matched = [torch.where(lab > 0, idx, -1) for lab, idx in zip(labels, matched_idxs)]
        weights = self.size_weights.matched(targets, matched)
        loss_classifier, loss_box_reg = size_weighted_fastrcnn_loss(class_logits, box_regression, labels, regression_targets, weights)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def _box_loss_per_sample(loss_type, box_coder, anchors, matched_gt_boxes, bbox_regression) -> Tensor:
    """torchvision's ``_box_loss`` without the sum: ``[M, 4]`` (l1, smooth_l1) or ``[M]`` (IoU losses)."""
    if loss_type in ("l1", "smooth_l1"):
        target = box_coder.encode_single(matched_gt_boxes, anchors)
        if loss_type == "l1":
            return F.l1_loss(bbox_regression, target, reduction="none")
        return F.smooth_l1_loss(bbox_regression, target, reduction="none", beta=1.0)
    decoded = box_coder.decode_single(bbox_regression, anchors)
    fn = {"ciou": complete_box_iou_loss, "diou": distance_box_iou_loss, "giou": generalized_box_iou_loss}[loss_type]
    return fn(decoded, matched_gt_boxes, reduction="none", eps=1e-7)


class SizeWeightedRetinaNetRegressionHead(RetinaNetRegressionHead):
    """RetinaNet's regression head with a size-weighted loss (same parameters as torchvision's)."""

    size_weights: BoxSizeWeights

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        """Per image ``sum_a w_a * loss_a / max(1, foreground anchors)``, averaged over images."""
        losses = []
        weights = self.size_weights.matched(targets, matched_idxs, per_image=True)
        for t, regression, anchors_i, idx, w in zip(targets, head_outputs["bbox_regression"], anchors, matched_idxs, weights):
            fg = torch.where(idx >= 0)[0]
            per_anchor = _box_loss_per_sample(self._loss_type, self.box_coder, anchors_i[fg], t["boxes"][idx[fg]], regression[fg, :])
            # l1 / smooth_l1 keep the 4 coordinates apart so that unit weights sum exactly as torchvision.
            w_fg = w[fg, None] if per_anchor.dim() == 2 else w[fg]
            loss = (per_anchor * w_fg.to(per_anchor.dtype)).sum()
            losses.append(loss / max(1, fg.numel()))
        return _sum(losses) / max(1, len(targets))


def enable_size_weights(model: nn.Module, size_weights: BoxSizeWeights) -> nn.Module:
    """Switch a built torchvision Faster R-CNN or RetinaNet to the size-weighted box loss."""
    if hasattr(model, "roi_heads"):
        if model.roi_heads.has_mask() or model.roi_heads.has_keypoint():
            raise SmallboxError("size-weighted loss supports box-only Faster R-CNN")
        model.roi_heads.__class__ = SizeWeightedRoIHeads
        model.roi_heads.size_weights = size_weights
    else:
        model.head.regression_head.__class__ = SizeWeightedRetinaNetRegressionHead
        model.head.regression_head.size_weights = size_weights
    return model


__all__ = ["BoxSizeWeights", "SizeWeightedRetinaNetRegressionHead", "SizeWeightedRoIHeads", "TARGET_AREA_KEY",
           "enable_size_weights", "size_weighted_fastrcnn_loss"]
