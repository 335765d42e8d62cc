"""One definition of "small": area thresholds in original-image pixels², used alike by the EDA,
the per-area splits, the loss weighting and the evaluator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SmallboxError

COCO_THRESHOLDS = (32.0**2, 96.0**2)
BUCKET_NAMES = ("small", "medium", "large")
# pycocotools' upper bound for "all" and for the last bucket.
AREA_MAX = 1e10


@dataclass(frozen=True)
class SizeBuckets:
    """Three size buckets split at two area thresholds (pixels² of the original image).

    Args:
        thresholds (tuple[float, float]): ascending upper bounds of "small" and "medium".
        name (str): where they came from: ``"coco"``, ``"fit"`` or ``"custom"``. Metric keys of
            non-COCO buckets carry it, so COCO's and the data's numbers never get mixed up.

    A box of area ``a`` belongs to bucket ``i`` when ``thresholds[i-1] <= a < thresholds[i]``.
    The evaluator uses pycocotools' closed ranges ``[lo, hi]`` instead; a box whose area equals a
    threshold exactly counts in both there, as in COCO itself.
    """

    thresholds: tuple[float, float] = COCO_THRESHOLDS
    name: str = "coco"

    def __post_init__(self):
        t = tuple(float(x) for x in self.thresholds)
        if len(t) != 2 or not all(math.isfinite(x) and x > 0 for x in t) or t[0] >= t[1]:
            raise SmallboxError(f"size thresholds must be two ascending positive areas, got {self.thresholds}")
        object.__setattr__(self, "thresholds", t)

    @classmethod
    def coco(cls) -> "SizeBuckets":
        return cls(COCO_THRESHOLDS, "coco")

    @classmethod
    def fit(cls, areas, quantiles=(1 / 3, 2 / 3)) -> "SizeBuckets":
        """Thresholds at quantiles of the box areas (default tertiles: each bucket holds about a
        third of the boxes, so each bucket's AP rests on enough boxes to mean something), rounded
        to a whole side length so that they read as ``side²``."""
        areas = np.asarray(areas, dtype=np.float64)
        areas = areas[np.isfinite(areas) & (areas > 0)]
        if areas.size < 3:
            raise SmallboxError(f"cannot fit size thresholds on {areas.size} boxes")
        sides = np.sqrt(np.quantile(areas, quantiles))
        t = [max(1.0, round(s)) ** 2 for s in sides]
        if t[1] <= t[0]:
            t[1] = (math.sqrt(t[0]) + 1) ** 2
        return cls(tuple(t), "fit")

    @classmethod
    def parse(cls, spec: str, areas=None) -> "SizeBuckets":
        """``"coco"``, ``"fit"`` (needs ``areas``) or two areas ``"A,B"``; each area may be written
        as a side squared: ``"32^2,96^2"``."""
        spec = str(spec).strip()
        if spec == "coco":
            return cls.coco()
        if spec == "fit":
            if areas is None:
                raise SmallboxError("'fit' size buckets need box areas to fit on")
            return cls.fit(areas)
        try:
            values = [_parse_area(p) for p in spec.split(",")]
        except ValueError:
            raise SmallboxError(f"size buckets must be 'coco', 'fit' or 'A,B' (areas in px², e.g. 32^2,96^2), got {spec!r}") from None
        return cls(tuple(values), "custom")

    @classmethod
    def from_dict(cls, d: dict) -> "SizeBuckets":
        return cls(tuple(d["thresholds"]), d.get("name", "custom"))

    def to_dict(self) -> dict:
        return {"name": self.name, "thresholds": list(self.thresholds)}

    @property
    def is_coco(self) -> bool:
        return self.thresholds == COCO_THRESHOLDS

    def ranges(self) -> list[tuple[str, float, float]]:
        """``[(name, lo, hi), ...]`` for small, medium, large; the last ``hi`` is ``AREA_MAX``."""
        bounds = (0.0, *self.thresholds, AREA_MAX)
        return [(n, bounds[i], bounds[i + 1]) for i, n in enumerate(BUCKET_NAMES)]

    def index(self, areas) -> np.ndarray:
        """Bucket index (0 small, 1 medium, 2 large) of each area; shape of ``areas``."""
        return np.searchsorted(np.asarray(self.thresholds), np.asarray(areas, dtype=np.float64), side="right")

    def describe(self) -> str:
        sides = ", ".join(f"{math.sqrt(t):g}²" for t in self.thresholds)
        return f"{self.name} ({sides})"


def _parse_area(text: str) -> float:
    text = text.strip()
    if text.endswith("^2"):
        return float(text[:-2]) ** 2
    return float(text)
