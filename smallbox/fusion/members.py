"""The members of an ensemble: check that their predictions describe the same images and classes,
and parse per-member size gates."""

from __future__ import annotations

import math

from ..datasets.buckets import AREA_MAX, SizeBuckets
from ..datasets.split import parse_area_range
from ..errors import SmallboxError


def check_members(members: list[list[dict]], paths: list) -> None:
    """Members must predict on the same images: any two share at least one image (a member
    without boxes on some images is fine)."""
    image_sets = [{p["image_id"] for p in preds} for preds in members]
    for i in range(len(members)):
        for j in range(i + 1, len(members)):
            if not image_sets[i] & image_sets[j]:
                raise SmallboxError(
                    f"{paths[i]} and {paths[j]} predict on different images (no image id in common, "
                    f"e.g. {sorted(image_sets[i], key=str)[:3]} vs {sorted(image_sets[j], key=str)[:3]})")


def check_categories(members: list[list[dict]], paths: list) -> None:
    """Without a ground truth: the category ids of the members must nest (``{0..5}`` against
    ``{1..6}`` is a 0- vs 1-based mix-up, not a specialist)."""
    cat_sets = [{p["category_id"] for p in preds} for preds in members]
    largest = max(range(len(members)), key=lambda i: len(cat_sets[i]))
    for i, cats in enumerate(cat_sets):
        extra = cats - cat_sets[largest]
        if extra:
            raise SmallboxError(
                f"{paths[i]} has category ids {sorted(extra)[:5]} that {paths[largest]} never predicts: "
                "different class sets? Pass --gt to name the categories")


def parse_gate(spec: str, buckets: SizeBuckets):
    """A member's area range ``(lo, hi)`` in px² (``lo <= w*h < hi``), or None for all boxes.

    ``spec``: ``all``; a bucket name of ``buckets`` or several joined by ``+``
    (``medium+large``); or ``NAME:MIN:MAX`` as in ``smallbox convert --split`` (areas in px², may
    be written ``32^2``; ``MAX`` may be ``inf``).
    """
    spec = spec.strip()
    if spec == "all":
        return None
    if ":" in spec:
        rng = parse_area_range(spec)  # the same NAME:MIN:MAX as `smallbox convert --split`
        return rng.min_area, rng.max_area
    names = spec.split("+")
    ranges = {n: (lo, hi) for n, lo, hi in buckets.ranges()}
    unknown = [n for n in names if n not in ranges]
    if unknown:
        raise SmallboxError(f"gate {spec!r}: unknown size range {unknown[0]!r}; use all, {', '.join(buckets.names)}, "
                            "joined by + (e.g. medium+large), or NAME:MIN:MAX")
    index = sorted(buckets.names.index(n) for n in names)
    if index != list(range(index[0], index[-1] + 1)):
        raise SmallboxError(f"gate {spec!r}: ranges must be neighbours")
    lo, hi = ranges[buckets.names[index[0]]][0], ranges[buckets.names[index[-1]]][1]
    return lo, (math.inf if hi >= AREA_MAX else hi)


def specialist_gates(spec: str, n_members: int, buckets: SizeBuckets) -> list:
    """``--specialist-range``: the first member keeps boxes in the range, the others the rest."""
    rng = parse_gate(spec, buckets)
    if rng is None:
        raise SmallboxError("--specialist-range needs a range, not 'all'")
    lo, hi = rng
    if lo <= 0:
        rest = (hi, math.inf)
    elif math.isinf(hi):
        rest = (0.0, lo)
    else:
        raise SmallboxError(f"--specialist-range {spec!r}: the rest of a middle range is two ranges; use --gate")
    return [rng] + [rest] * (n_members - 1)


def describe_gate(rng) -> str:
    if rng is None:
        return "all boxes"
    lo, hi = rng
    return f"{lo:g} <= area < {hi:g} px²"

