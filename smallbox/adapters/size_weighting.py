"""How much a box counts in the box loss, by its size bucket: the one rule both training paths
(Ultralytics YOLO and torchvision) use.

Configured as a mapping (a top-level ``size_weighting`` key of a YOLO model YAML, so it is saved
in every checkpoint; ``loss.size_weights`` of a torchvision recipe)::

    thresholds: [1024, 9216]    # px² of the ORIGINAL image; also "coco", ["32^2", "96^2"], or
                                # "fit" / any bucket set named in the data (resolved by the trainer)
    weights: [3.0, 1.5, 1.0]    # small, medium, large
    renorm: true                # keep the sum of box weights over the batch's positives

A box's bucket comes from its area in the original image (the json ``area`` the evaluator
buckets by), through :class:`smallbox.datasets.SizeBuckets` -- the same object the EDA, the
per-area splits and the evaluator use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..datasets.buckets import BUCKET_NAMES, SizeBuckets
from ..datasets.manifest import dataset_section
from ..errors import SmallboxError

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
    section = dataset_section(data, data.get("yaml_file", "data.yaml"))
    sets = {b.name: list(b.thresholds) for b in section.buckets} if section else {}
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
