"""One definition of "small": named size ranges over box area in original-image pixels², used
alike by the EDA, the per-area splits, the loss weighting, the evaluator and every report.

A bucket set is any number of contiguous, named ranges (``--areas``):

- ``coco``: small [0, 32²), medium [32², 96²), large [96², ∞) (COCO's);
- ``aitod``: verytiny [0, 8²), tiny [8², 16²), small [16², 32²), medium [32², ∞): exactly the
  ranges and names of the AI-TOD evaluator (cocoapi-aitod; ``faster-coco-eval-aitod``), which
  also keeps up to 1,500 detections per image (:data:`PRESET_MAX_DETS`);
- ``fit`` / ``fit:K``: K ranges (3 by default) at quantiles of the data's box areas, so each holds
  about 1/K of the boxes;
- ``A,B,...``: thresholds in px² (``8^2,16^2,32^2,64^2`` gives five ranges);
- ``NAME=LO:HI,...``: named ranges (``vt=0:8^2,t=8^2:16^2,s=16^2:32^2,m=32^2:64^2``), each
  starting where the previous one ends; boxes beyond the last one fall in no range (only "all").

A box of area ``a`` belongs to range ``i`` when ``bounds[i] <= a < bounds[i+1]``. The evaluator
uses pycocotools' closed ranges ``[lo, hi]`` instead; a box whose area equals a threshold exactly
counts in both there, as in COCO itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import SmallboxError

COCO_THRESHOLDS = (32.0**2, 96.0**2)
BUCKET_NAMES = ("small", "medium", "large")  # the names of any three-range set (COCO's, fit's tertiles)
AITOD_THRESHOLDS = (8.0**2, 16.0**2, 32.0**2)
AITOD_NAMES = ("verytiny", "tiny", "small", "medium")
# pycocotools' upper bound for "all" and for the last range (AI-TOD's 1e5² is the same number).
AREA_MAX = 1e10
PRESET_MAX_DETS = {"aitod": 1500}  # detections per image a preset's benchmark evaluates
RANGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SizeBuckets:
    """Named, contiguous size ranges split at ``thresholds`` (pixels² of the original image).

    Args:
        thresholds: ascending inner bounds; ``len(thresholds) + 1`` ranges.
        name: the set's name (``coco``, ``aitod``, ``fit``, ``custom``): metric keys of every set
            but COCO's carry it (``fit/AP_small``), so two sets' numbers never get mixed up.
        names: the ranges' names; default small / medium / large for three ranges, else from the
            bounds' sides (``to8``, ``8to16``, ..., ``from64``).
        lower, upper: where the first range starts and the last one ends (0 and ``AREA_MAX``
            unless named ranges say otherwise).
    """

    thresholds: tuple[float, ...] = COCO_THRESHOLDS
    name: str = "coco"
    names: tuple[str, ...] | None = None
    lower: float = 0.0
    upper: float = AREA_MAX

    def __post_init__(self):
        t = tuple(float(x) for x in self.thresholds)
        bounds = (float(self.lower), *t, float(self.upper))
        if not t or not all(math.isfinite(x) and x > 0 for x in t) or any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise SmallboxError(f"size thresholds must be ascending positive areas inside [{self.lower:g}, {self.upper:g}), "
                                f"got {self.thresholds}")
        names = tuple(self.names) if self.names else _default_names(bounds)
        if len(names) != len(t) + 1:
            raise SmallboxError(f"{len(t) + 1} size ranges need {len(t) + 1} names, got {list(names)}")
        if len(set(names)) != len(names) or not all(RANGE_NAME.match(n) for n in names) or "all" in names:
            raise SmallboxError(f"size range names must be distinct words of letters, digits and _ (not 'all'), got {list(names)}")
        object.__setattr__(self, "thresholds", t)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "lower", float(self.lower))
        object.__setattr__(self, "upper", float(self.upper))

    @classmethod
    def coco(cls) -> "SizeBuckets":
        return cls(COCO_THRESHOLDS, "coco")

    @classmethod
    def aitod(cls) -> "SizeBuckets":
        return cls(AITOD_THRESHOLDS, "aitod", AITOD_NAMES)

    @classmethod
    def fit(cls, areas, quantiles=(1 / 3, 2 / 3), name: str = "fit") -> "SizeBuckets":
        """Thresholds at quantiles of the box areas (default tertiles: each range holds about a
        third of the boxes, so each range's AP rests on enough boxes to mean something), rounded
        to a whole side length so that they read as ``side²``."""
        areas = np.asarray(areas, dtype=np.float64)
        areas = areas[np.isfinite(areas) & (areas > 0)]
        if areas.size < len(quantiles) + 1:
            raise SmallboxError(f"cannot fit {len(quantiles) + 1} size ranges on {areas.size} boxes")
        sides = np.sqrt(np.quantile(areas, quantiles))
        t = []
        for s in sides:  # whole sides, strictly ascending
            side = max(1.0, float(round(s)))
            if t and side ** 2 <= t[-1]:
                side = math.sqrt(t[-1]) + 1
            t.append(side ** 2)
        k = len(t) + 1
        names = BUCKET_NAMES if k == 3 else tuple(f"q{i + 1}" for i in range(k))
        return cls(tuple(t), name, names)

    @classmethod
    def parse(cls, spec: str, areas=None) -> "SizeBuckets":
        """``coco``, ``aitod``, ``fit`` / ``fit:K`` (need ``areas``), thresholds ``A,B,...`` or
        named ranges ``NAME=LO:HI,...`` (areas in px², each may be written as a side squared:
        ``32^2``; ``HI`` of the last range may be ``inf``). See the module docstring."""
        spec = str(spec).strip()
        if spec == "coco":
            return cls.coco()
        if spec == "aitod":
            return cls.aitod()
        if spec == "fit" or spec.startswith("fit:"):
            k = 3 if spec == "fit" else _int_or_error(spec[4:], spec)
            if k < 2:
                raise SmallboxError(f"--areas {spec}: fit:K needs K >= 2 ranges")
            if areas is None:
                raise SmallboxError(f"'{spec}' size ranges need box areas to fit on")
            return cls.fit(areas, tuple(i / k for i in range(1, k)))
        if "=" in spec:
            return _named(spec)
        try:
            values = [_parse_area(p) for p in spec.split(",")]
        except ValueError:
            raise SmallboxError(f"--areas must be coco, aitod, fit, fit:K, thresholds A,B,... or named ranges "
                                f"NAME=LO:HI,... (areas in px², e.g. 32^2,96^2), got {spec!r}") from None
        return cls(tuple(values), "custom")

    @classmethod
    def from_dict(cls, d: dict) -> "SizeBuckets":
        return cls(tuple(d["thresholds"]), d.get("name", "custom"), tuple(d["names"]) if d.get("names") else None,
                   float(d.get("lower", 0.0)), float(d.get("upper", AREA_MAX)))

    def to_dict(self) -> dict:
        out = {"name": self.name, "thresholds": list(self.thresholds)}
        if self.names != _default_names(self.bounds):
            out["names"] = list(self.names)
        if self.lower != 0.0:
            out["lower"] = self.lower
        if self.upper != AREA_MAX:
            out["upper"] = self.upper
        return out

    @property
    def bounds(self) -> tuple[float, ...]:
        return (self.lower, *self.thresholds, self.upper)

    @property
    def is_coco(self) -> bool:
        return self.thresholds == COCO_THRESHOLDS and self.names == BUCKET_NAMES and self.covers_all

    @property
    def covers_all(self) -> bool:
        """Every box falls in one range (no bound but the thresholds)."""
        return self.lower == 0.0 and self.upper >= AREA_MAX

    def ranges(self) -> list[tuple[str, float, float]]:
        """``[(name, lo, hi), ...]`` in order; an open last range ends at ``AREA_MAX``."""
        b = self.bounds
        return [(n, b[i], b[i + 1]) for i, n in enumerate(self.names)]

    def index(self, areas) -> np.ndarray:
        """Range index of each area (shape of ``areas``); -1 where it falls in no range."""
        areas = np.asarray(areas, dtype=np.float64)
        index = np.searchsorted(np.asarray(self.thresholds), areas, side="right")
        if not self.covers_all:
            index = np.where((areas < self.lower) | (areas >= self.upper), -1, index)
        return index

    def describe(self) -> str:
        if self.names == BUCKET_NAMES and self.covers_all:
            return f"{self.name} ({', '.join(_side(t) for t in self.thresholds)})"
        return f"{self.name} (" + ", ".join(f"{n} {_side(lo)}-{_side(hi)}" for n, lo, hi in self.ranges()) + ")"

    def range_text(self) -> list[str]:
        """Each range as ``name [lo, hi)`` in sides, for tables."""
        return [f"{n} [{_side(lo)}, {_side(hi)})" for n, lo, hi in self.ranges()]


def _side(area: float) -> str:
    if area >= AREA_MAX:
        return "inf"
    side = math.sqrt(area)
    return f"{side:g}²" if abs(side - round(side)) < 1e-9 else f"{area:g}"


def _default_names(bounds: tuple[float, ...]) -> tuple[str, ...]:
    if len(bounds) == 4:
        return BUCKET_NAMES
    sides = [("%g" % math.sqrt(b)).replace(".", "_") for b in bounds]
    first, last = f"to{sides[1]}", f"from{sides[-2]}" if bounds[-1] >= AREA_MAX else f"{sides[-2]}to{sides[-1]}"
    return (first, *(f"{sides[i]}to{sides[i + 1]}" for i in range(1, len(bounds) - 2)), last)


def _named(spec: str) -> SizeBuckets:
    """``NAME=LO:HI,...``: contiguous named ranges."""
    names, bounds = [], []
    for part in spec.split(","):
        name, _, rng = part.partition("=")
        lo_hi = rng.split(":")
        if len(lo_hi) != 2:
            raise SmallboxError(f"--areas {spec!r}: each named range is NAME=LO:HI, got {part!r}")
        try:
            lo, hi = (_parse_area(x) for x in lo_hi)
        except ValueError:
            raise SmallboxError(f"--areas {spec!r}: areas in px² or side^2 (hi may be inf), got {part!r}") from None
        if bounds and lo != bounds[-1]:
            raise SmallboxError(f"--areas {spec!r}: range {name.strip()!r} must start where the previous one ends "
                                f"({bounds[-1]:g} px²), got {lo:g}")
        if not bounds:
            bounds.append(lo)
        bounds.append(min(hi, AREA_MAX))
        names.append(name.strip())
    if len(names) < 2:
        raise SmallboxError(f"--areas {spec!r}: give at least two ranges")
    return SizeBuckets(tuple(bounds[1:-1]), "custom", tuple(names), bounds[0], bounds[-1])


def _int_or_error(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SmallboxError(f"--areas {spec}: fit:K needs an integer K") from None


def _parse_area(text: str) -> float:
    text = text.strip()
    if text in ("inf", "Inf", "INF"):
        return AREA_MAX
    if text.endswith("^2"):
        return float(text[:-2]) ** 2
    return float(text)
