"""How many seeds per side before spending GPU days: the power of the calibrated test
(:func:`smallbox.analysis.significance.calibrated_test`) and the smallest number of runs per
side that reaches a target power, from the seed spread and the test-set noise measured on the
runs one has.

A plan is only as good as the spread it is given: a pilot of 2-4 seeds estimates the seed
variance with 1-3 degrees of freedom, and planning on that point estimate reaches the target
power in well under half of the cases (docs/analysis.md). So every plan is also given for the
one-sided upper confidence bound of the seed variance (:func:`var_run_upper`, 80% by default).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ..errors import SmallboxError
from .significance import SignificanceResult, degrees_of_freedom

N_MAX = 200


def power(delta: float, n: int, var_run: float, var_img: float = 0.0, alpha: float = 0.05,
          var_run_b: float | None = None, grid: int = 96) -> float:
    """Power of the calibrated test (``n`` runs per side: Welch's run df) against a true
    difference ``delta``, for normal seed effects.

    Args:
        var_run: variance of one run's metric across seeds on a fixed test set (``s²``), of A (and
            of B unless ``var_run_b``).
        var_img: ``Var(g_B - g_A)``, the test set's share of the difference's variance; more seeds
            do not shrink it, only more test images do.

    ``D ~ N(delta, V)`` with ``V = (s²_A + s²_B)/n + var_img``; the test's ``V_hat`` uses
    ``S²_s ~ s²_s chi²_{n-1}/(n-1)`` and the df computed from them, so the power
    ``E[Phi((delta - c)/sqrt(V)) + Phi((-delta - c)/sqrt(V))]``, ``c = t_{1-alpha/2, nu_hat}
    sqrt(V_hat)``, is integrated on a ``grid x grid`` of chi-square quantiles (the image part is
    taken as known: hundreds of images estimate it). The noncentral-t shortcut with the expected
    df overstates the power by a few points at 2-3 runs.
    """
    if n < 2:
        raise ValueError("power needs n >= 2 runs per side")
    vb = var_run if var_run_b is None else var_run_b
    sd = math.sqrt((var_run + vb) / n + var_img)
    q = stats.chi2.ppf((np.arange(grid) + 0.5) / grid, n - 1) / (n - 1)
    sa, sb = np.meshgrid(var_run * q / n, vb * q / n, indexing="ij")
    v_hat = sa + sb + var_img
    nu = degrees_of_freedom(sa, sb, n, n, var_img)
    finite = np.isfinite(nu)
    tq = np.where(finite, stats.t.ppf(1 - alpha / 2, np.where(finite, nu, 1)), stats.norm.ppf(1 - alpha / 2))
    c = tq * np.sqrt(v_hat)
    if sd == 0:
        return 1.0 if delta != 0 else 0.0
    return float((stats.norm.cdf((delta - c) / sd) + stats.norm.cdf((-delta - c) / sd)).mean())


@dataclass
class Plan:
    """Runs per side to detect ``delta`` with ``target_power`` at level ``1 - alpha``.

    Attributes:
        n: runs per side; None when no number up to ``n_max`` reaches the target (``reason``).
        n_normal: the closed-form normal approximation (before the t refinement).
        min_detectable: the smallest ``|delta|`` detectable at the target power with infinitely
            many seeds: below it only more test images help.
    """

    delta: float
    alpha: float
    target_power: float
    var_run: float
    var_img: float
    n: int | None
    power_at_n: float | None
    n_normal: float | None
    min_detectable: float
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def plan_runs(delta: float, var_run: float, var_img: float = 0.0, alpha: float = 0.05, target_power: float = 0.8,
              n_max: int = N_MAX) -> Plan:
    """Smallest ``n >= 2`` runs per side with :func:`power` ``>= target_power``.

    First ``n_z = 2 s² z² / (delta² - var_img z²)`` with ``z = z_{1-alpha/2} + z_power``; when
    ``delta² <= var_img z²`` the test set alone is too noisy and no number of seeds helps. Then the
    smallest ``n`` whose power (t quantile with few df) reaches the target.
    """
    delta = abs(delta)
    zz = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target_power)
    min_detectable = zz * math.sqrt(var_img)
    room = delta ** 2 - var_img * zz ** 2
    plan = Plan(delta, alpha, target_power, var_run, var_img, None, None, None, min_detectable)
    if room <= 0:
        plan.reason = (f"the test images alone (se {math.sqrt(var_img):.4f}) hide |B - A| < {min_detectable:.4f} "
                       "whatever the number of seeds: add test images")
        return plan
    plan.n_normal = 2 * var_run * zz ** 2 / room
    for n in range(2, n_max + 1):
        p = power(delta, n, var_run, var_img, alpha)
        if p >= target_power:
            plan.n, plan.power_at_n = n, p
            return plan
    plan.reason = f"more than {n_max} seeds per side: add test images or aim at a larger difference"
    return plan


def var_run_upper(var_run: float, df_run: float, confidence: float = 0.8) -> float:
    """One-sided upper confidence bound of a seed variance estimated with ``df_run`` df."""
    return var_run * df_run / stats.chi2.ppf(1 - confidence, df_run)


@dataclass
class RunsPlan:
    """The answer of ``smallbox significance --plan``: the spreads measured on the given runs and
    a plan from the seed variance's point estimate and from its upper bound."""

    var_run: float
    df_run: int
    var_run_upper: float
    confidence: float
    var_img: float
    n_now: int
    power_now: float
    point: Plan
    upper: Plan

    def to_dict(self) -> dict:
        return {**asdict(self), "point": self.point.to_dict(), "upper": self.upper.to_dict()}


def plan_from_result(res: SignificanceResult, delta: float, target_power: float = 0.8, confidence: float = 0.8,
                     n_max: int = N_MAX, alpha: float | None = None) -> RunsPlan:
    """Plan from the runs of a comparison: the seed variance pooled over the sides with 2+ runs,
    the test images' variance of the difference less the run x image part (estimated on those
    sides), and the test's level (or ``alpha``: e.g. a family-wise corrected one)."""
    if not 0 < target_power < 1:
        raise SmallboxError(f"power {target_power}: must lie strictly between 0 and 1 (a power of 1 needs infinitely many seeds)")
    sides = [(v, h) for v, h in ((res.a_values, res.interaction_a), (res.b_values, res.interaction_b)) if len(v) >= 2]
    if not sides:
        raise SmallboxError("planning needs 2+ runs on at least one side: the seed spread cannot be measured from one")
    if delta <= 0:
        raise SmallboxError(f"--delta {delta}: the difference to detect must be > 0 (in the metric's units, e.g. 0.02)")
    df_run = sum(len(v) - 1 for v, _ in sides)
    var_run = sum(float(np.var(v, ddof=1)) * (len(v) - 1) for v, _ in sides) / df_run
    h = float(np.mean([h for _, h in sides]))
    var_img = max(0.0, res.var_images_paired - h * (1 / len(res.a_values) + 1 / len(res.b_values)))
    alpha = 1 - res.level if alpha is None else alpha
    upper = var_run_upper(var_run, df_run, confidence)
    n_now = min(len(res.a_values), len(res.b_values))
    return RunsPlan(var_run, df_run, upper, confidence, var_img, n_now,
                    power(delta, max(n_now, 2), var_run, var_img, alpha),
                    plan_runs(delta, var_run, var_img, alpha, target_power, n_max),
                    plan_runs(delta, upper, var_img, alpha, target_power, n_max))


def format_plan(p: RunsPlan, metric: str = "") -> str:
    """The lines ``smallbox significance --plan`` prints."""
    what = f" {metric}" if metric else ""
    pct = f"{p.point.target_power * 100:g}%"
    lines = [f"plan: seeds per side to detect |B - A| = {p.point.delta:.4f}{what} with {pct} power"
             f" ({(1 - p.point.alpha) * 100:g}% interval clear of 0)",
             f"  seed spread s = {math.sqrt(p.var_run):.4f} ({p.df_run} df); its {p.confidence * 100:g}% upper bound"
             f" {math.sqrt(p.var_run_upper):.4f}; test images: se of the difference {math.sqrt(p.var_img):.4f}"
             " (more seeds do not shrink it)",
             f"  from the measured spread: {_answer(p.point)}",
             f"  from its upper bound (safer: a few seeds measure a spread poorly): {_answer(p.upper)}",
             f"  with {max(p.n_now, 2)} runs per side: power {p.power_now * 100:.0f}%"]
    return "\n".join(lines)


def _answer(plan: Plan) -> str:
    if plan.n is None:
        return plan.reason
    return f"{plan.n} seeds per side (power {plan.power_at_n * 100:.0f}%)"
