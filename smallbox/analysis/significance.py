"""Is B better than A? A t interval over training runs, widened by a paired image bootstrap.

What moves a measured metric (e.g. AP_small) of run ``r`` (a seed) of recipe ``s`` on test set ``S``::

    Y_sr(S) = mu_s + u_sr + g_s(S) + h_sr(S)

``u_sr`` is the seed's effect, ``g_s(S)`` how this finite test set happens to suit recipe ``s``
(shared by all its runs), ``h_sr(S)`` the run x image interaction (two seeds miss different
boxes). The question is ``mu_B - mu_A``. For ``D = mean(B runs) - mean(A runs)``:

* each side's run variance ``s²_s`` on the fixed test set estimates ``Var(u) + Var(h)`` with
  ``n_s - 1`` degrees of freedom (the runs all see the same images: it holds no ``g``);
* the paired image bootstrap of ``D`` (the same image draw for every run of both sides, runs held
  fixed) estimates ``Var(g_B - g_A) + Var(h_A)/n_A + Var(h_B)/n_B`` from hundreds of images;
* the spread across runs of the bootstrap deviations ``Y*_sr - Y_sr`` estimates ``Var(h_s)``.

So ``V = s²_A/n_A + s²_B/n_B + V_img`` with ``V_img = max(0, V_boot - h²_A/n_A - h²_B/n_B)`` (the
run x image part counted once), and the interval is ``D ± t·sqrt(V)``. Degrees of freedom: the
run terms have Welch's (1947) ``nu_runs``; the image term, from hundreds of images, has many.
Satterthwaite's (1946) combination ``nu_runs (V / V_runs)²`` is liberal with 2 runs per side
(6.3% false wins at 5% when the image term is 10-30% of the run terms, normal seeds: the plug-in
run variances are small exactly when the df come out large), so the df grow only in proportion:
``nu = nu_runs V / V_runs`` (at most 4.8% there; the two agree when either term vanishes). With
unequal run counts Welch's ``nu_runs`` is liberal (Behrens-Fisher), so ``df="auto"`` takes Hsu's
``min(n_A, n_B) - 1`` there (Hsu 1938). "B better" only when the whole interval is above 0. With
one run on a side the seed spread is unknown: the verdict is "cannot tell" whatever the interval.
docs/analysis.md argues the choice and shows its calibration (bench/bench_calibration.py).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import stats
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
DF_RULES = ("auto", "welch", "hsu")
CHUNK = 16  # resamples computed together: memory about CHUNK x detections; 16 is the fastest for AP


@dataclass
class SignificanceResult:
    """Every number behind a verdict. Variances are of the metric (AP units squared).

    Attributes:
        a_values, b_values: the metric of each run on the full test set.
        var_runs_a, var_runs_b: ``s²/n`` of each side (None with one run).
        interaction_a, interaction_b: run x image variance of one run of each side (None with one run).
        var_images_paired: paired image bootstrap variance of ``D`` (runs held fixed).
        var_interaction: ``h²_A/n_A + h²_B/n_B``, the run x image part the run variances already hold.
        var_images: the image term used (``var_images_paired`` less ``var_interaction``, at least 0).
        df: degrees of freedom of the t quantile (``inf``: normal), by ``df_rule``.
        a_resampled, b_resampled: ``[B, n_A]``, ``[B, n_B]`` the metric on each usable image resample.
    """

    a_values: list[float]
    b_values: list[float]
    difference: float
    level: float
    method: str
    df_rule: str
    var_runs_a: float | None
    var_runs_b: float | None
    interaction_a: float | None
    interaction_b: float | None
    var_images_paired: float
    var_interaction: float
    var_images: float
    se: float
    df: float
    t_quantile: float
    interval: tuple[float, float]
    p_value: float | None
    verdict: str
    n_resamples: int
    metric: str = ""
    areas: str = ""
    n_images: int = 0
    a_resampled: np.ndarray = field(default=None, repr=False)
    b_resampled: np.ndarray = field(default=None, repr=False)

    @property
    def runs_counted(self) -> bool:
        """Both sides have a seed spread (2+ runs): the interval covers training noise."""
        return min(len(self.a_values), len(self.b_values)) >= 2

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("a_resampled", "b_resampled")}
        out["interval"] = list(self.interval)
        out["df"] = None if math.isinf(self.df) else self.df
        out["runs_counted"] = self.runs_counted
        out["a_mean"], out["b_mean"] = float(np.mean(self.a_values)), float(np.mean(self.b_values))
        out["a_std"], out["b_std"] = _std(self.a_values), _std(self.b_values)
        return out


def _std(values) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


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


def calibrated_test(a_values, b_values, a_res, b_res, level: float = 0.95, df: str = "auto") -> SignificanceResult:
    """The interval of ``mean(B) - mean(A)`` and its verdict, from the numbers alone.

    Args:
        a_values, b_values: ``[n_A]``, ``[n_B]`` the metric of each run on the full test set.
        a_res, b_res: ``[B, n_A]``, ``[B, n_B]`` the metric of each run on ``B`` image resamples,
            the SAME draws for every run of both sides; rows with a NaN (metric undefined on that
            resample) are dropped.
        df: the run terms' df: ``auto`` (Welch's with equal run counts, else Hsu's), ``welch`` or
            ``hsu`` (``min(n_A, n_B) - 1``); see :func:`degrees_of_freedom`.
    """
    if df not in DF_RULES:
        raise SmallboxError(f"df {df!r}: choose one of {', '.join(DF_RULES)}")
    a, b = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    a_res, b_res = np.asarray(a_res, np.float64).reshape(-1, len(a)), np.asarray(b_res, np.float64).reshape(-1, len(b))
    usable = np.isfinite(a_res).all(1) & np.isfinite(b_res).all(1)
    a_res, b_res = a_res[usable], b_res[usable]
    if len(a_res) < 2:
        raise SmallboxError("the metric is undefined on the image resamples (no ground truth in its size range?)")
    n_a, n_b = len(a), len(b)
    diff = float(b.mean() - a.mean())
    v_boot = float((b_res.mean(1) - a_res.mean(1)).var(ddof=1))
    h_a, h_b = _interaction(a_res), _interaction(b_res)
    common = dict(a_values=a.tolist(), b_values=b.tolist(), difference=diff, level=level, interaction_a=h_a,
                  interaction_b=h_b, var_images_paired=v_boot, n_resamples=len(a_res), a_resampled=a_res,
                  b_resampled=b_res)
    if min(n_a, n_b) < 2:
        return _images_only(common, v_boot, diff, level, n_a, n_b, df)
    var_a, var_b = float(a.var(ddof=1)) / n_a, float(b.var(ddof=1)) / n_b
    v_int = h_a / n_a + h_b / n_b
    v_img = max(0.0, v_boot - v_int)
    var = var_a + var_b + v_img
    rule = ("welch" if n_a == n_b else "hsu") if df == "auto" else df
    nu = degrees_of_freedom(var_a, var_b, n_a, n_b, v_img, rule)
    se = math.sqrt(var)
    tq = _quantile(level, nu)
    lo, hi = diff - tq * se, diff + tq * se
    if se > 0:
        p = float(2 * (stats.t.sf(abs(diff) / se, nu) if math.isfinite(nu) else stats.norm.sf(abs(diff) / se)))
    else:
        p = 1.0 if diff == 0 else 0.0
    verdict = B_BETTER if lo > 0 else A_BETTER if hi < 0 else NO_DIFFERENCE
    runs = ("Welch t over runs" if rule == "welch"
            else f"Hsu t over runs (run df min(n) - 1{', unequal run counts' if df == 'auto' else ''})")
    return SignificanceResult(**common, method=f"{runs} + paired image bootstrap (run x image counted once),"
                                               " df x total / run variance",
                              df_rule=df, var_runs_a=var_a, var_runs_b=var_b, var_interaction=v_int, var_images=v_img,
                              se=se, df=nu, t_quantile=tq, interval=(lo, hi), p_value=p, verdict=verdict)


def _interaction(res: np.ndarray) -> float | None:
    """Run x image variance of one run: the across-run variance of the bootstrap deviations
    ``Y*_r - Y_r`` at a resample, averaged over resamples (None with one run)."""
    if res.shape[1] < 2:
        return None
    dev = res - res.mean(0, keepdims=True)
    return float(dev.var(axis=1, ddof=1).mean()) * len(res) / (len(res) - 1)


def _images_only(common: dict, v_boot: float, diff: float, level: float, n_a: int, n_b: int, df: str):
    """One run on a side: the interval covers the test images only and never makes a verdict."""
    se = math.sqrt(v_boot)
    z = _quantile(level, math.inf)
    one = ONE_RUN if max(n_a, n_b) < 2 else f"cannot tell: one run on side {'A' if n_a < 2 else 'B'}"
    return SignificanceResult(**common, method="paired image bootstrap only (a seed spread needs 2+ runs per side)",
                              df_rule=df, var_runs_a=None, var_runs_b=None, var_interaction=0.0, var_images=v_boot,
                              se=se, df=math.inf, t_quantile=z, interval=(diff - z * se, diff + z * se), p_value=None,
                              verdict=one)


def _quantile(level: float, nu: float) -> float:
    q = 0.5 + level / 2
    return float(stats.t.ppf(q, nu)) if math.isfinite(nu) else float(stats.norm.ppf(q))


def degrees_of_freedom(var_a: float, var_b: float, n_a: int, n_b: int, var_images: float = 0.0,
                       rule: str = "welch") -> float:
    """Degrees of freedom of ``var_a + var_b + var_images``, where ``var_s = s²_s/n_s`` has
    ``n_s - 1`` df and ``var_images`` many: the run terms' df (Welch's, or Hsu's ``min(n) - 1``)
    times the total over the run terms. Works elementwise on arrays (the planner's grid)."""
    var_runs = np.asarray(var_a + var_b, dtype=np.float64)
    if rule == "hsu":
        nu_runs = np.full(var_runs.shape, float(min(n_a, n_b) - 1))
    else:
        den = np.asarray(var_a ** 2 / (n_a - 1) + var_b ** 2 / (n_b - 1), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            nu_runs = np.where(den > 0, var_runs ** 2 / np.where(den > 0, den, 1.0), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(var_runs > 0, nu_runs * (var_runs + var_images) / np.where(var_runs > 0, var_runs, 1.0), np.inf)
    return float(nu) if nu.ndim == 0 else nu


def compare_runs(gt, runs_a: list, runs_b: list, metric: str = "AP_small", buckets=None, n: int = 1000,
                 seed: int = 0, level: float = 0.95, df: str = "auto", progress: bool = True) -> SignificanceResult:
    """Is B better than A on ``metric``, counting the test images and the training runs as noise.

    Args:
        gt: COCO ground truth (:class:`CocoDataset`, dict or path).
        runs_a, runs_b: prediction sets (paths or lists of COCO results), one per training run.
        metric: ``AP``, ``AP50``, ``AP75``, ``AP_small``, ``AP_medium`` or ``AP_large``.
        buckets: :class:`SizeBuckets` the size metrics use (default COCO's).
        n: paired image resamples; ``seed``: their random seed.
    """
    if not runs_a or not runs_b:
        raise SmallboxError("significance needs at least one prediction file on each side")
    if df not in DF_RULES:
        raise SmallboxError(f"df {df!r}: choose one of {', '.join(DF_RULES)}")
    gt = _as_dataset(gt)
    buckets = buckets or SizeBuckets.coco()
    image_ids = [im["id"] for im in gt.images]
    load = lambda p: load_predictions(p, image_ids, gt.category_ids, gt_images=gt.images)  # noqa: E731
    preds_a, preds_b = [load(p) for p in runs_a], [load(p) for p in runs_b]
    _check_distinct_runs("A", runs_a, preds_a)
    _check_distinct_runs("B", runs_b, preds_b)
    weights = image_weights(np.random.default_rng(seed), n, len(image_ids))
    a_full, a_res = run_metric_resamples(gt, preds_a, metric, buckets, weights, progress)
    b_full, b_res = run_metric_resamples(gt, preds_b, metric, buckets, weights, progress)
    if not (np.isfinite(a_full).all() and np.isfinite(b_full).all()) or min(a_full.min(), b_full.min()) < 0:
        raise SmallboxError(f"{metric} is undefined on this ground truth (no boxes in its size range)")
    try:
        res = calibrated_test(a_full, b_full, a_res, b_res, level, df)
    except SmallboxError:
        raise SmallboxError(f"{metric} is undefined on the image resamples of this ground truth "
                            "(too few boxes in its size range)") from None
    return replace(res, metric=metric, areas=buckets.describe(), n_images=len(image_ids))


def _as_dataset(gt) -> CocoDataset:
    if isinstance(gt, CocoDataset):
        return gt
    if isinstance(gt, dict):
        return CocoDataset(Path("ground truth"), gt)
    return load_coco(gt, check_files=False)


def _check_distinct_runs(side: str, sources: list, preds_list: list):
    """The same predictions twice on one side would pass for a second seed with no spread (only
    files of equal length are compared)."""
    sizes = Counter(len(p) for p in preds_list)
    seen = {}
    for source, preds in zip(sources, preds_list):
        if sizes[len(preds)] < 2:
            continue
        rows = np.array([(p["image_id"], p["category_id"], *p["bbox"], p["score"]) for p in preds], np.float64)
        key = hashlib.sha1(rows.tobytes()).hexdigest()
        if key in seen:
            name = lambda x: x if isinstance(x, (str, os.PathLike)) else "a prediction list"  # noqa: E731
            raise SmallboxError(f"side {side}: {name(source)} has the same predictions as {name(seen[key])}: "
                                "each file must come from a different training run")
        seen[key] = source


def format_result(res: SignificanceResult) -> str:
    """The text ``smallbox significance`` prints: the method and every number it used."""
    pct = f"{res.level * 100:g}%"
    lines = ([f"metric {res.metric} (size buckets {res.areas}), {res.n_images} images, "
              f"{res.n_resamples} paired image resamples"] if res.metric else [])
    lines += [_side_line("A", res.a_values), _side_line("B", res.b_values),
              f"B - A = {res.difference:+.4f}", f"method: {res.method}"]
    interval = f"[{res.interval[0]:+.4f}, {res.interval[1]:+.4f}]"
    if res.runs_counted:
        df = "inf" if math.isinf(res.df) else f"{res.df:.1f}"
        lines += [f"  variance of the difference = runs A s²/n {res.var_runs_a:.3g} + runs B s²/n {res.var_runs_b:.3g}"
                  f" + test images {res.var_images:.3g} (paired bootstrap {res.var_images_paired:.3g}"
                  f" less run x image {res.var_interaction:.3g})",
                  f"  se {res.se:.4f}, df {df}, t quantile {res.t_quantile:.3f}, p = {res.p_value:.3g}",
                  f"{pct} interval {interval}"]
    else:
        lines += [f"  variance of the difference = test images {res.var_images:.3g} (paired bootstrap),"
                  f" se {res.se:.4f}, normal quantile {res.t_quantile:.3f}",
                  f"{pct} interval over the test images only {interval}",
                  "  this interval ignores training noise (another seed of the same recipe moves the metric too),"
                  " so it can never establish a win: train 2+ seeds per side"]
    lines.append(f"verdict: {res.verdict}")
    return "\n".join(lines)


def _side_line(name: str, values: list[float]) -> str:
    runs = ", ".join(f"{v:.4f}" for v in values)
    if len(values) < 2:
        return f"{name} (1 run): {runs}   seed spread unknown"
    return f"{name} ({len(values)} runs): {runs}   mean {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (seed spread, std)"


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm 1979) of a family of tests, in the given order;
    None (no test) stays None and is not counted in the family.

    Sorted ascending, ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
    Rejecting where ``adj < alpha`` keeps the chance of any false "better" in the family at most
    ``alpha`` whatever the dependence between the tests (all arms share one baseline)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def corrected_verdict(res: SignificanceResult, p_adjusted: float | None) -> str:
    """The verdict at the family-wise level: better / worse only where the adjusted p is below
    ``1 - level``; one run per side stays "cannot tell"."""
    if p_adjusted is None or not res.runs_counted:
        return res.verdict
    if p_adjusted < 1 - res.level:
        return B_BETTER if res.difference > 0 else A_BETTER
    return NO_DIFFERENCE
