"""Plain-text tables of evaluation results, as printed by ``smallbox eval`` and the demo."""

from __future__ import annotations

import math

from ..datasets.buckets import BUCKET_NAMES
from .cocoeval import METRIC_KEYS


def _fmt(v: float) -> str:
    return "   -  " if v is None or v < 0 else f"{v:6.3f}"


def format_metrics(result: dict, title: str = "") -> str:
    """The COCO numbers, then AP/AR by size range for every bucket set (one header per set of
    range names), then per-class AP."""
    lines = [title] if title else []
    ar = [k for k in result if k.startswith("AR_") and k[3:].isdigit()]
    first = list(METRIC_KEYS[:6])
    second = sorted(ar, key=lambda k: int(k[3:])) + ["AR_small", "AR_medium", "AR_large"]
    for keys in (first, second):
        lines.append("  ".join(f"{k:>9}" for k in keys))
        lines.append("  ".join(f"{_fmt(result.get(k)):>9}" for k in keys))
    lines.append("")
    header = None
    for name, b in result.get("buckets", {}).items():
        names = b.get("names") or list(BUCKET_NAMES)
        width = [max(11, len(n) + 5) for n in names]  # "AP_" + the name and two spaces: long names stay apart
        if names != header:
            lines.append(f"{'size ranges':<28}" + "".join(f"{'AP_' + n:>{w}}" for n, w in zip(names, width))
                         + "".join(f"{'AR_' + n:>{w}}" for n, w in zip(names, width)))
            header = names
        sides = "/".join(_side(t) for t in b["thresholds"])
        label = f"{name} ({sides})"
        lines.append(f"{label:<28}" + "".join(f"{_fmt(b['AP_' + n]):>{w}}" for n, w in zip(names, width))
                     + "".join(f"{_fmt(b['AR_' + n]):>{w}}" for n, w in zip(names, width)))
    if result.get("max_dets", 100) != 100:
        lines.append(f"(up to {result['max_dets']} detections per image and class)")
    if "per_class" in result:
        lines.append("")
        lines.append(f"{'class':<20}{'AP':>8}{'AP50':>8}" + "".join(f"{'AP_' + b:>11}" for b in BUCKET_NAMES))
        for name, c in result["per_class"].items():
            lines.append(f"{name[:19]:<20}{_fmt(c['AP']):>8}{_fmt(c['AP50']):>8}"
                         + "".join(f"{_fmt(c['AP_' + n]):>11}" for n in BUCKET_NAMES))
    return "\n".join(lines)


def _side(area: float) -> str:
    side = math.sqrt(area)
    return f"{side:g}²" if abs(side - round(side)) < 1e-9 else f"{area:g}"
