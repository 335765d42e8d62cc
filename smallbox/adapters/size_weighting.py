"""How much a box counts in the box loss, by its size bucket: the one rule both training paths
(Ultralytics YOLO and torchvision) use.

Configured as a mapping (a top-level ``size_weighting`` key of a YOLO model YAML, so it is saved
in every checkpoint; ``loss.size_weights`` of a torchvision recipe)::

    thresholds: [1024, 9216]    # px² of the ORIGINAL image; also "coco", ["32^2", "96^2"], or
                                # "fit" / any bucket set named in the data (resolved by the trainer)
    weights: [3.0, 1.5, 1.0]    # small, medium, large
    renorm: true                # see below
    by: original                # (YOLO only) or `input`; see below

**Bucket.** A box's bucket comes from its ORIGINAL area: the json ``area`` the evaluator buckets
by (``w*h`` of the json bbox where the json has none), carried with the box through every
augmentation (YOLO: :mod:`smallbox.adapters.yolo.train_data`; torchvision: the ``orig_area``
target of :class:`smallbox.adapters.tv.data.CocoDetection`). Bucket ``i`` when
``thresholds[i-1] <= area < thresholds[i]``, as :meth:`smallbox.datasets.SizeBuckets.index`.
pycocotools' ranges are closed (``[lo, hi]``), so a box whose area equals a threshold exactly
counts in both buckets there; a loss weight needs one bucket, and it takes the upper one.

``by: input`` (YOLO only, not the default) weights a box by its area at the network input divided
by the image's letterbox ratio instead: Ultralytics' random ``scale`` (0.25x-2.25x in area at
the default 0.5) and a mosaic's other tiles then move boxes across buckets (about a third of
DeepPCB's boxes). That is the size the network has to detect; choose it to ask whether that
matters more than the evaluator's size.

**renorm** multiplies every weight of a batch by one factor ``k`` chosen so that, over the
batch's positive samples ``a`` (the samples that carry a box-regression term),
``sum_a c_a * k * s_a == sum_a c_a``, where ``s_a`` is the size weight of the ground-truth box
``a`` is assigned to and ``c_a`` is the coefficient with which ``a``'s box term enters the
unweighted loss:

* YOLO (Ultralytics' ``BboxLoss``): ``c_a = sum(target_scores[a])`` over foreground anchors
  (the common divisor ``target_scores_sum`` stays Ultralytics' own);
* torchvision Faster R-CNN: ``c_a = 1`` over positive sampled ROIs (the divisor, all sampled
  ROIs, is torchvision's);
* torchvision RetinaNet: ``c_a = 1 / (foreground anchors of a's image)`` over foreground anchors
  (then the mean over images, torchvision's).

So the box loss keeps its scale when every positive's term is equal, and only the buckets'
shares move; without renorm, weights above 1 also raise the effective box gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..datasets.buckets import SizeBuckets
from ..datasets.manifest import dataset_section
from ..errors import SmallboxError

CONFIG_KEY = "size_weighting"
BY = ("original", "input")  # the first is the default


@dataclass(frozen=True)
class SizeWeighting:
    """Per-bucket weights of the box loss.

    Args:
        buckets (SizeBuckets): thresholds in original-image px².
        weights (tuple[float, ...]): one weight per size range (small, medium, large for COCO's
            or the fitted tertiles; four for aitod, ...).
        renorm (bool): scale the batch's weights so the coefficient-weighted sum over its
            positives is unchanged (module docstring).
        by (str): ``"original"`` (the evaluator's bucket, default) or ``"input"`` (the size at
            the network input divided by the letterbox ratio; YOLO only).
    """

    buckets: SizeBuckets
    weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    renorm: bool = True
    by: str = BY[0]

    @classmethod
    def from_config(cls, cfg, source: str = "model YAML", key: str = CONFIG_KEY) -> "SizeWeighting":
        """Parse the ``size_weighting`` mapping (``key`` names it in errors); a SmallboxError names the bad entry."""
        where = f"{source}: {key}"
        if not isinstance(cfg, dict):
            raise SmallboxError(f"{where} must be a mapping with thresholds, weights, renorm; got {cfg!r}")
        unknown = set(cfg) - {"thresholds", "weights", "renorm", "by"}
        if unknown:
            raise SmallboxError(f"{where}: unknown key(s) {sorted(unknown)} (expected thresholds, weights, renorm, by)")
        name = named_thresholds({CONFIG_KEY: cfg})
        if name is not None:
            raise SmallboxError(f"{where}.thresholds: {name!r} names a bucket set of the data YAML; it is "
                                "resolved when `smallbox yolo train` builds the model (data=... written by smallbox convert)")
        buckets = _parse_thresholds(cfg.get("thresholds", "coco"), where)
        weights = cfg.get("weights")
        k, names = len(buckets.names), ", ".join(buckets.names)
        try:
            weights = tuple(float(w) for w in weights)
        except (TypeError, ValueError):
            raise SmallboxError(f"{where}.weights must be {k} numbers ({names}), got {weights!r}") from None
        if len(weights) != k or not all(math.isfinite(w) and w > 0 for w in weights):
            raise SmallboxError(f"{where}.weights must be {k} positive numbers, one per size range ({names}), got {list(weights)}")
        renorm = cfg.get("renorm", True)
        if not isinstance(renorm, bool):
            raise SmallboxError(f"{where}.renorm must be true or false, got {renorm!r}")
        by = cfg.get("by", BY[0])
        if by not in BY:
            raise SmallboxError(f"{where}.by must be one of {', '.join(BY)} (original: the evaluator's bucket), got {by!r}")
        return cls(buckets, weights, renorm, by)

    @classmethod
    def from_model_yaml(cls, model_yaml: dict) -> "SizeWeighting | None":
        """The weighting of a model YAML dict, or None when it has no ``size_weighting``."""
        cfg = model_yaml.get(CONFIG_KEY)
        if cfg is None:
            return None
        return cls.from_config(cfg, source=str(model_yaml.get("yaml_file", "model YAML")))

    def to_dict(self) -> dict:
        return {"thresholds": list(self.buckets.thresholds), "weights": list(self.weights), "renorm": self.renorm, "by": self.by}

    def describe(self) -> str:
        bounds = ("0", *(f"{math.sqrt(t):g}²" for t in self.buckets.thresholds), "inf")
        parts = [f"{n} [{bounds[i]}, {bounds[i + 1]}) x{w:g}" for i, (n, w) in enumerate(zip(self.buckets.names, self.weights))]
        by = ", by network-input area / letterbox ratio²" if self.by == "input" else ""  # default: the evaluator's bucket
        return ", ".join(parts) + by + (" (renormalised)" if self.renorm else "")

    def box_weights(self, area_orig: torch.Tensor) -> torch.Tensor:
        """Weight of each box from its area in original-image px²; same shape as ``area_orig``.
        Bucket ``i`` when ``thresholds[i-1] <= area < thresholds[i]``, as SizeBuckets.index (a
        box beyond the first or last range of a named set takes that range's weight)."""
        thresholds = torch.tensor(self.buckets.thresholds, dtype=area_orig.dtype, device=area_orig.device)
        weights = torch.tensor(self.weights, dtype=area_orig.dtype, device=area_orig.device)
        return weights[torch.bucketize(area_orig, thresholds, right=True)]


def renorm_factor(coef: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The factor ``k`` of ``renorm``: ``sum(coef * k * weights) == sum(coef)`` (1 where the
    batch has no positive). ``coef`` is each sample's coefficient in the unweighted loss, 0 for
    samples without a box term; same shape as ``weights``. A 0-d tensor, computed on the device
    (no host sync); exactly 1 for unit weights."""
    weighted = (coef * weights).sum()
    return torch.where(weighted > 0, coef.sum() / weighted.clamp(min=torch.finfo(weighted.dtype).tiny), torch.ones_like(weighted))


def named_thresholds(model_yaml: dict) -> str | None:
    """The bucket set name in ``size_weighting.thresholds`` (e.g. ``"fit"``), if it holds one."""
    cfg = model_yaml.get(CONFIG_KEY)
    name = cfg.get("thresholds") if isinstance(cfg, dict) else None
    preset = isinstance(name, str) and (name in ("coco", "aitod") or any(c in name for c in ",=^"))
    return name if isinstance(name, str) and not preset else None


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
    section = dataset_section(data, data.get("yaml_file", "data.yaml"))
    sets = {b.name: b.to_dict() if b.names != ("small", "medium", "large") else list(b.thresholds)
            for b in section.buckets} if section else {}
    if name not in sets:
        where = f"{model_yaml.get('yaml_file', 'model YAML')}: {CONFIG_KEY}.thresholds"
        known = ", ".join(sets) or "none: write it with `smallbox convert`"
        raise SmallboxError(f"{where}: {name!r} is not a size bucket set of the data YAML (it has: {known})")
    return {**model_yaml, CONFIG_KEY: {**cfg, "thresholds": sets[name]}}


def _parse_thresholds(value, where: str) -> SizeBuckets:
    if isinstance(value, dict):  # a recorded set (resolve_named_thresholds): its names travel with it
        try:
            return SizeBuckets.from_dict(value)
        except (KeyError, TypeError, SmallboxError) as e:
            raise SmallboxError(f"{where}.thresholds: {e}") from None
    if isinstance(value, str):
        value = [value]
    try:
        return SizeBuckets.parse(",".join(str(v) for v in value))
    except (TypeError, SmallboxError) as e:
        raise SmallboxError(f"{where}.thresholds: {e}") from None
