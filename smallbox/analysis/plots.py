"""PNG plots of the analysis: AP by size bucket per run (bars), precision-recall curves per size
bucket (from the per-image matches)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..datasets.buckets import BUCKET_NAMES, SizeBuckets  # noqa: E402
from ..evaluate.matching import REC_THRS, match_images, precision_recall_curve  # noqa: E402
from ..fileio import atomic_path  # noqa: E402


def save_figure(fig, path) -> Path:
    """Write a PNG through a temporary file and a rename: never half-written."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_ap_by_size(series: dict[str, dict[str, tuple[float, float]]], path, title: str = "AP by size bucket") -> Path:
    """Grouped bars, one panel per bucket set.

    Args:
        series: ``{run label: {"coco/AP_small": (mean, std), ...}}`` (std NaN for one run).
    """
    sets = sorted({c.partition("/")[0] for s in series.values() for c in s}, key=lambda x: (x != "coco", x))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    width = 0.8 / max(1, len(series))
    for ax, prefix in zip(axes[0], sets):
        names = list(dict.fromkeys(c.split("/AP_", 1)[1] for s in series.values() for c in s if c.startswith(f"{prefix}/AP_")))
        x = np.arange(len(names))
        for i, (label, values) in enumerate(series.items()):
            means = [values.get(f"{prefix}/AP_{b}", (math.nan, math.nan))[0] for b in names]
            stds = [values.get(f"{prefix}/AP_{b}", (math.nan, math.nan))[1] for b in names]
            stds = [0 if not math.isfinite(s) else s for s in stds]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=label)
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("AP (IoU .50:.95)")
        ax.set_title(f"{prefix} ranges")
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.suptitle(title + " (bars: mean over seeds, whiskers: std)")
    return save_figure(fig, path)


def pr_curves_by_size(gt, preds: list[dict], bucket_sets: list[SizeBuckets], iou: float = 0.5) -> dict:
    """``{(set name, bucket): precision [101]}`` at recall ``REC_THRS``, averaged over classes."""
    ranges = [(b.name, name, (lo, hi)) for b in bucket_sets for name, lo, hi in b.ranges()]  # any set's names
    matched = match_images(gt, preds, [r for _, _, r in ranges])
    return {(s, name): precision_recall_curve(m, iou) for (s, name, _), m in zip(ranges, matched)}


def plot_pr_curves(curves: dict[str, dict], path, iou: float = 0.5) -> Path:
    """One panel per (bucket set, size bucket), one line per run.

    Args:
        curves: ``{run label: {(set name, bucket): precision [101]}}`` (-1: no ground truth).
    """
    sets = list(dict.fromkeys(s for c in curves.values() for s, _ in c))
    names = {s: list(dict.fromkeys(b for c in curves.values() for s2, b in c if s2 == s)) for s in sets}
    cols = max(len(n) for n in names.values()) if names else len(BUCKET_NAMES)
    fig, axes = plt.subplots(len(sets), cols, figsize=(4.2 * cols, 3.6 * len(sets)), squeeze=False)
    for row, s in zip(axes, sets):
        for ax in row[len(names[s]):]:
            ax.set_axis_off()
        for ax, bucket in zip(row, names[s]):
            for label, c in curves.items():
                p = c.get((s, bucket))
                if p is not None and (p >= 0).all():
                    ax.plot(REC_THRS, p, label=label)
            ax.set_title(f"{bucket} ({s} ranges)")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.grid(alpha=0.3)
    with_lines = [ax for ax in axes.ravel() if ax.get_legend_handles_labels()[0]]
    if with_lines:
        with_lines[0].legend(fontsize=8, loc="lower left")
    else:
        axes[0][0].text(0.5, 0.5, "no ground truth in any bucket", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle(f"precision-recall by size bucket, IoU {iou:g}, mean over classes (COCO's interpolation)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_metric_vs_cost(points: dict[str, tuple], path, metric: str, title: str, baseline: str | None = None) -> Path:
    """One point per arm: the metric (mean, whisker: std over seeds) against the training CPU
    minutes behind it; arms called better / worse than the baseline are marked.

    Args:
        points: ``{label: (cpu minutes or None, mean, std, verdict)}``.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = {"B better": "tab:green", "A better": "tab:red"}
    for label, (minutes, mean, std, verdict) in points.items():
        if minutes is None or not math.isfinite(mean):
            continue
        colour = "black" if label == baseline else colours.get(verdict, "tab:blue")
        ax.errorbar(minutes, mean, yerr=0 if not math.isfinite(std) else std, fmt="o", color=colour, capsize=3)
        ax.annotate(label, (minutes, mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if baseline in points and points[baseline][0] is not None and math.isfinite(points[baseline][1]):
        ax.axhline(points[baseline][1], color="black", lw=0.8, ls="--", alpha=0.5)
    ax.set_xlabel("training CPU minutes behind the predictions (the arm it starts from included)")
    ax.set_ylabel(f"{metric} (mean over seeds, whisker: std)")
    ax.grid(alpha=0.3)
    ax.set_title(title + "\n(black: baseline; green / red: better / worse after Holm; blue: no detectable difference)",
                 fontsize=9)
    return save_figure(fig, path)
