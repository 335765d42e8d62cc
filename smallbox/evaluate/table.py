"""Plain-text tables of evaluation results, as printed by ``smallbox eval`` and the demo."""

from __future__ import annotations

import math

from ..datasets.buckets import BUCKET_NAMES
from .cocoeval import METRIC_KEYS


def _fmt(v: float) -> str:
    return "   -  " if v is None or v < 0 else f"{v:6.3f}"


def format_metrics(result: dict, title: str = "") -> str:
    """The 12 COCO numbers, then AP/AR by size for every bucket set, then per-class AP."""
    lines = [title] if title else []
    lines.append("  ".join(f"{k:>9}" for k in METRIC_KEYS[:6]))
    lines.append("  ".join(f"{_fmt(result[k]):>9}" for k in METRIC_KEYS[:6]))
    lines.append("  ".join(f"{k:>9}" for k in METRIC_KEYS[6:]))
    lines.append("  ".join(f"{_fmt(result[k]):>9}" for k in METRIC_KEYS[6:]))
    lines.append("")
    lines.append(f"{'size buckets':<28}" + "".join(f"{'AP_' + b:>11}" for b in BUCKET_NAMES)
                 + "".join(f"{'AR_' + b:>11}" for b in BUCKET_NAMES))
    for name, b in result.get("buckets", {}).items():
        sides = "/".join(f"{math.sqrt(t):g}²" for t in b["thresholds"])
        label = f"{name} ({sides})"
        lines.append(f"{label:<28}" + "".join(f"{_fmt(b['AP_' + n]):>11}" for n in BUCKET_NAMES)
                     + "".join(f"{_fmt(b['AR_' + n]):>11}" for n in BUCKET_NAMES))
    if "per_class" in result:
        lines.append("")
        lines.append(f"{'class':<20}{'AP':>8}{'AP50':>8}" + "".join(f"{'AP_' + b:>11}" for b in BUCKET_NAMES))
        for name, c in result["per_class"].items():
            lines.append(f"{name[:19]:<20}{_fmt(c['AP']):>8}{_fmt(c['AP50']):>8}"
                         + "".join(f"{_fmt(c['AP_' + n]):>11}" for n in BUCKET_NAMES))
    return "\n".join(lines)
