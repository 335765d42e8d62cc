"""Is B better than A? A two-level bootstrap over training runs and test images.

Two things make a measured difference move: which images are in the test set, and which seed
trained the model. The second is often the larger (two seeds of one YOLOv8s recipe: AP_small
0.527 vs 0.568 on the same 500 images), so an image-only bootstrap between two single runs
calls "wins" between copies of one recipe. Here each resample draws images with replacement,
the same draw for both sides (paired), and, independently per side, runs with replacement;
the statistic is ``mean(B runs) - mean(A runs)``. With a single run on a side the training noise
of that side is unknown and the verdict says so whatever the interval.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..datasets.buckets import SizeBuckets
from ..datasets.coco import CocoDataset, load_coco
from ..errors import SmallboxError
from ..evaluate.matching import average_precision, match_images, metric_range
from ..predictions import load_predictions

B_BETTER = "B better"
A_BETTER = "A better"
NO_DIFFERENCE = "no detectable difference"
ONE_RUN = "cannot tell: one run per side"
CHUNK = 50  # resamples computed together: bounds memory at about CHUNK x detections


@dataclass
class BootstrapResult:
    """The outcome of :func:`bootstrap_difference`.

    Attributes:
        a_values, b_values: the metric of each run on the full image set.
        difference: ``mean(b_values) - mean(a_values)``.
        interval: ``(lo, hi)`` percentile interval of the resampled differences.
        verdict: one of ``B_BETTER``, ``A_BETTER``, ``NO_DIFFERENCE``, or a "cannot tell" line.
        diffs: ``[n]`` resampled differences (resamples where the metric was undefined dropped).
    """

    metric: str
    areas: str
    n_images: int
    n_resamples: int
    level: float
    a_values: list[float]
    b_values: list[float]
    difference: float
    interval: tuple[float, float]
    verdict: str
    diffs: np.ndarray = field(repr=False)

    @property
    def runs_resampled(self) -> bool:
        return min(len(self.a_values), len(self.b_values)) >= 2

    def to_dict(self) -> dict:
        return {"metric": self.metric, "areas": self.areas, "n_images": self.n_images,
                "n_resamples": self.n_resamples, "level": self.level, "a_values": self.a_values,
                "b_values": self.b_values, "difference": self.difference, "interval": list(self.interval),
                "verdict": self.verdict, "runs_resampled": self.runs_resampled}


def image_weights(rng: np.random.Generator, n_resamples: int, n_images: int) -> np.ndarray:
    """``[n_resamples, n_images]`` counts of each image in sets of ``n_images`` drawn with
    replacement."""
    draws = rng.integers(0, n_images, size=(n_resamples, n_images))
    flat = draws + np.arange(n_resamples)[:, None] * n_images
    return np.bincount(flat.ravel(), minlength=n_resamples * n_images).reshape(n_resamples, n_images)


def run_metric_resamples(gt, preds_list: list, metric: str, buckets: SizeBuckets, weights: np.ndarray,
                         progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The metric of each prediction set on the full image set ``[R]`` and on each row of
    ``weights`` ``[n, R]`` (NaN where the resample has no ground truth in the range)."""
    area_range, iou = metric_range(metric, buckets)
    full = np.zeros(len(preds_list))
    resampled = np.zeros((len(weights), len(preds_list)))
    chunks = range(0, len(weights), CHUNK)
    bar = tqdm(total=len(preds_list) * len(chunks), desc=f"bootstrap {metric}", unit="chunk", disable=not progress)
    for r, preds in enumerate(preds_list):
        matches = match_images(gt, preds, [area_range])[0]
        full[r] = average_precision(matches, iou=iou)[0]
        for start in chunks:
            resampled[start:start + CHUNK, r] = average_precision(matches, weights[start:start + CHUNK], iou=iou)
            bar.update()
    bar.close()
    resampled[resampled < 0] = np.nan
    return full, resampled


def bootstrap_difference(gt, runs_a: list, runs_b: list, metric: str = "AP_small", buckets=None,
                         n: int = 1000, seed: int = 0, level: float = 0.95, progress: bool = True) -> BootstrapResult:
    """Interval of ``mean(B) - mean(A)`` of ``metric`` by a two-level, image-paired bootstrap.

    Args:
        gt: COCO ground truth (:class:`CocoDataset`, dict or path).
        runs_a, runs_b: prediction sets (paths or lists of COCO results), one per training run.
        metric: ``AP``, ``AP50``, ``AP75``, ``AP_small``, ``AP_medium`` or ``AP_large``.
        buckets: :class:`SizeBuckets` the size metrics use (default COCO's).
    """
    if not runs_a or not runs_b:
        raise SmallboxError("significance needs at least one prediction file on each side")
    gt = _as_dataset(gt)
    buckets = buckets or SizeBuckets.coco()
    image_ids = [im["id"] for im in gt.images]
    category_ids = gt.category_ids
    load = lambda p: load_predictions(p, image_ids, category_ids)  # noqa: E731
    rng = np.random.default_rng(seed)
    weights = image_weights(rng, n, len(image_ids))
    preds_a, preds_b = [load(p) for p in runs_a], [load(p) for p in runs_b]
    _check_distinct_runs("A", runs_a, preds_a)
    _check_distinct_runs("B", runs_b, preds_b)
    a_full, a_res = run_metric_resamples(gt, preds_a, metric, buckets, weights, progress)
    b_full, b_res = run_metric_resamples(gt, preds_b, metric, buckets, weights, progress)
    diffs = _resample_runs(rng, b_res) - _resample_runs(rng, a_res)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        raise SmallboxError(f"{metric} is undefined on this ground truth (no boxes in its size range)")
    tail = (1 - level) / 2 * 100
    interval = (float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)))
    return BootstrapResult(metric, buckets.describe(), len(image_ids), int(diffs.size), level,
                           a_full.tolist(), b_full.tolist(), float(b_full.mean() - a_full.mean()), interval,
                           verdict(interval, len(runs_a), len(runs_b)), diffs)


def _as_dataset(gt) -> CocoDataset:
    if isinstance(gt, CocoDataset):
        return gt
    if isinstance(gt, dict):
        return CocoDataset(Path("ground truth"), gt)
    return load_coco(gt, check_files=False)


def _check_distinct_runs(side: str, sources: list, preds_list: list):
    """The same predictions twice on one side would pass for a second seed with no spread."""
    seen = {}
    for source, preds in zip(sources, preds_list):
        key = hashlib.sha1(json.dumps(preds, sort_keys=True).encode()).hexdigest()
        if key in seen:
            name = lambda x: x if isinstance(x, (str, os.PathLike)) else "a prediction list"  # noqa: E731
            raise SmallboxError(f"side {side}: {name(source)} has the same predictions as {name(seen[key])}: "
                                "each file must come from a different training run")
        seen[key] = source


def _resample_runs(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """``[n]`` mean over runs drawn with replacement (per resample) of ``values [n, R]``."""
    n, n_runs = values.shape
    picks = rng.integers(0, n_runs, size=(n, n_runs))
    return np.take_along_axis(values, picks, axis=1).mean(axis=1)


def verdict(interval: tuple[float, float], n_a: int, n_b: int) -> str:
    """One plain line. A win needs two or more runs on each side: with one, the interval only
    covers the test images, and two seeds of one recipe differ by more than that."""
    if n_a < 2 and n_b < 2:
        return ONE_RUN
    if min(n_a, n_b) < 2:
        return f"cannot tell: one run on side {'A' if n_a < 2 else 'B'}"
    lo, hi = interval
    if lo > 0:
        return B_BETTER
    if hi < 0:
        return A_BETTER
    return NO_DIFFERENCE


def format_result(res: BootstrapResult) -> str:
    """The text ``smallbox significance`` prints."""
    pct = f"{res.level * 100:g}%"
    lines = [f"metric {res.metric} (size buckets {res.areas}), {res.n_images} images, {res.n_resamples} resamples",
             _side_line("A", res.a_values), _side_line("B", res.b_values)]
    if res.runs_resampled:
        lines.append(f"B - A = {res.difference:+.4f}, {pct} interval [{res.interval[0]:+.4f}, {res.interval[1]:+.4f}]"
                     " (runs and images resampled)")
    else:
        scope = "test images only" if max(len(res.a_values), len(res.b_values)) < 2 else "test images and one side's runs"
        lines.append(f"B - A = {res.difference:+.4f}, {pct} interval over {scope} "
                     f"[{res.interval[0]:+.4f}, {res.interval[1]:+.4f}]")
        lines.append("  this interval ignores training noise (another seed of the same recipe moves the metric too),"
                     " so it can never establish a win: train 2+ seeds per side")
    lines.append(f"verdict: {res.verdict}")
    return "\n".join(lines)


def _side_line(name: str, values: list[float]) -> str:
    runs = ", ".join(f"{v:.4f}" for v in values)
    if len(values) < 2:
        return f"{name} (1 run): {runs}   seed spread unknown"
    return f"{name} ({len(values)} runs): {runs}   mean {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (seed spread, std)"
