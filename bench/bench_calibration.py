"""Calibration of ``smallbox significance``: false wins and power with 2, 3 and 5 runs per side,
on simulated runs scored with real COCO matching (tests/simulated_runs.py).

For each run-noise / image-noise ratio (0 ... 10), ``--comparisons`` times: a new test set of 300
images, 150 paired image resamples, 5 runs of recipe A, 5 more runs of A (the null's side B) and 5
runs of B = A + a true effect of 2 x the run spread. The cells with 2 and 3 runs use the first runs
of the same comparisons. Printed per cell: the false-win rate ("B better" or "A better" between
two copies of one recipe) of the calibrated test and of the percentile two-level bootstrap it
replaced, and the power at the true effect with the planner's prediction
(:func:`smallbox.analysis.planning.power`) beside it, and how well a plan made from a 4-seed pilot
does (point estimate of the seed spread vs its 80% upper bound). ``--interaction`` adds the harder null: two
recipes equal on the image population that find different images hard (the test set's own noise
matters there), beside Satterthwaite's plug-in df the product does not use. Last, a normal-theory
table: the false-win rate for normal seed effects and a known image term of 0-100 x the run terms.

Exits 1, naming the cells, if the calibrated test's false-win rate exceeds 5% + 2 Monte-Carlo
standard errors in a cell of the same-recipe null or of the normal-theory table.

    nice -n 19 python bench/bench_calibration.py [--comparisons 200] [--workers N] [--interaction 200] [--seed 2024] [--json OUT]

About 0.1-0.2 s of CPU per simulated run: the full tables (22,000 runs) took 45 minutes on the
2 shared cores of the development machine (2 workers).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from simulated_runs import Side, level_settings, percentile_two_level, pilot, simulate_comparison  # noqa: E402
from smallbox.analysis.planning import plan_runs, power, var_run_upper  # noqa: E402
from smallbox.analysis.significance import (A_BETTER, B_BETTER, NO_DIFFERENCE, calibrated_test,  # noqa: E402
                                            degrees_of_freedom)

RATIOS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
N_RUNS = (2, 3, 5)
NOMINAL = 0.05
SEED = [2024]  # --seed: another run of the same cells on new simulated data


def rate(hits) -> tuple[float, float]:
    """Share and its Monte-Carlo standard error."""
    x = np.asarray(hits, float)
    p = float(x.mean())
    return p, math.sqrt(max(p * (1 - p), 1e-12) / len(x))


def bound(k: int) -> float:
    return NOMINAL + 2 * math.sqrt(NOMINAL * (1 - NOMINAL) / k)


def fmt(r) -> str:
    return f"{100 * r[0]:4.1f} ± {100 * r[1]:3.1f}"


def simulate(sides, settings, n_resamples, k, workers, tag, level):
    job = partial(_one, settings["sigma_run"], sides, n_resamples)
    seeds = [[SEED[0], tag, level, c] for c in range(k)]
    t0 = time.perf_counter()
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            out = pool.map(job, seeds, chunksize=1)
    else:
        out = [job(s) for s in seeds]
    return out, time.perf_counter() - t0


def _one(sigma_run, sides, n_resamples, seed):
    return simulate_comparison(seed, sigma_run, sides, n_resamples)


def verdict(a, b) -> str:
    (fa, ra), (fb, rb) = a, b
    return calibrated_test(fa, fb, ra, rb).verdict


def false_win(a, b) -> bool:
    return verdict(a, b) != NO_DIFFERENCE


def old_verdict(a, b, rng) -> str:
    lo, hi = percentile_two_level(a[1], b[1], rng)
    return B_BETTER if lo > 0 else A_BETTER if hi < 0 else NO_DIFFERENCE


def first(side, n):
    return side[0][:n], side[1][:, :n]


PILOT_DELTAS = {1.0: 0.025, 5.0: 0.10}  # differences to plan for from a 4-seed pilot (about 2 x the run sd)


def pilot_planning(ratio: float, comps: list[dict], run_var: float) -> list[dict]:
    """Plan n for ``PILOT_DELTAS[ratio]`` from each comparison's first 4 runs of A (the seed
    variance with 3 df), by its point estimate and by its 80% upper bound; the power each plan
    really has comes from the measured (pooled) run variance."""
    delta, rows = PILOT_DELTAS[ratio], []
    for label, upper in (("point estimate", False), ("80% upper bound", True)):
        ns = []
        for c in comps:
            v = float(np.var(c["A"][0][:4], ddof=1))
            ns.append(plan_runs(delta, var_run_upper(v, 3) if upper else v, n_max=500).n or 500)
        pw = np.array([power(delta, n, run_var) for n in ns])
        rows.append({"ratio": ratio, "delta": delta, "rule": label, "n_true": plan_runs(delta, run_var).n,
                     "n_median": float(np.median(ns)), "n_q10_q90": [float(q) for q in np.quantile(ns, [0.1, 0.9])],
                     "power_mean": float(pw.mean()), "reach_target": float(np.mean(pw >= 0.8 - 1e-9)), "k": len(ns)})
    return rows


def main_table(pil, args) -> tuple[list[dict], list[str], list[dict]]:
    rows, failed, plans = [], [], []
    sides = [Side("A", 5), Side("A2", 5), Side("B", 5)]
    for level, ratio in enumerate(args.ratios):
        st = level_settings(pil, ratio)
        sides[2] = Side("B", 5, dq=st["dq"])
        comps, seconds = simulate(sides, st, args.resamples, args.comparisons, args.workers, 0, level)
        same = np.array([np.concatenate([c["A"][0], c["A2"][0]]) for c in comps])
        run_sd = math.sqrt(float(np.mean(same.var(axis=1, ddof=1))))
        res = np.concatenate([np.concatenate([c["A"][1], c["A2"][1]], 1)[None] for c in comps]).astype(float)
        img_sd = float(np.nanmean(np.nanstd(res, axis=1, ddof=1)))
        var_b = float(np.mean([c["B"][0].var(ddof=1) for c in comps]))
        delta = float(np.mean([c["B"][0].mean() for c in comps]) - same.mean())
        print(f"ratio {ratio:g}: sigma_run {st['sigma_run']:.3f}, measured run sd {run_sd:.4f} (B {math.sqrt(var_b):.4f}), "
              f"image sd {img_sd:.4f}, ratio {run_sd / img_sd:.2f}, true delta {delta:.4f} = {delta / run_sd:.2f} run sd; "
              f"{len(comps)} comparisons in {seconds:.0f} s", flush=True)
        if ratio in PILOT_DELTAS:
            plans += pilot_planning(ratio, comps, run_sd ** 2)
        rng = np.random.default_rng([7, level])
        for n in N_RUNS:
            null = [false_win(first(c["A"], n), first(c["A2"], n)) for c in comps]
            alt = [verdict(first(c["A"], n), first(c["B"], n)) == B_BETTER for c in comps]
            row = {"ratio": ratio, "measured_ratio": run_sd / img_sd, "n": n, "k": len(comps), "delta": delta,
                   "null_new": rate(null), "null_old": rate([old_verdict(first(c["A"], n), first(c["A2"], n), rng) != NO_DIFFERENCE
                                      for c in comps]),
                   "power_new": rate(alt),
                   "power_old": rate([old_verdict(first(c["A"], n), first(c["B"], n), rng) == B_BETTER for c in comps]),
                   "power_predicted": power(delta, n, run_sd ** 2, 0.0, var_run_b=var_b)}
            rows.append(row)
            if row["null_new"][0] > bound(row["k"]):
                failed.append(f"ratio {ratio:g}, {n} runs per side: false wins {fmt(row['null_new'])}% "
                              f"> {100 * bound(row['k']):.1f}%")
    return rows, failed, plans


def satterthwaite_win(a, b) -> bool:
    """The prototype's rule: the same variance, Satterthwaite's df with the image term's df infinite."""
    (fa, ra), (fb, rb) = a, b
    r = calibrated_test(fa, fb, ra, rb)
    var_runs = r.var_runs_a + r.var_runs_b
    nu = degrees_of_freedom(r.var_runs_a, r.var_runs_b, len(fa), len(fb)) * ((var_runs + r.var_images) / var_runs) ** 2
    half = stats.t.ppf(0.975, nu) * r.se
    return abs(r.difference) > half


def interaction_table(pil, args) -> list[dict]:
    rows = []
    for level, ratio in enumerate((0.0, 1.0)):
        st = level_settings(pil, ratio)
        comps, seconds = simulate([Side("A", 5), Side("C", 5, rho=0.0)], st, args.resamples, args.interaction,
                                  args.workers, 1, level)
        print(f"interaction null, ratio {ratio:g}: {len(comps)} comparisons in {seconds:.0f} s", flush=True)
        for n in N_RUNS:
            pairs = [(first(c["A"], n), first(c["C"], n)) for c in comps]
            rows.append({"ratio": ratio, "n": n, "k": len(comps), "null_new": rate([false_win(a, b) for a, b in pairs]),
                         "null_satterthwaite": rate([satterthwaite_win(a, b) for a, b in pairs])})
    return rows


SHARES = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 100.0)


def normal_theory_table(k: int = 200_000) -> list[dict]:
    """Same recipe, normal seed effects (variance 1 per run), the image term known and ``share`` x
    the run terms: the false-win rate of the product's df and of Satterthwaite's plug-in df."""
    rng = np.random.default_rng(11)
    rows = []
    for n in N_RUNS:
        for share in SHARES:
            var_img = share * 2 / n
            a, b = rng.normal(0, 1, (k, n)), rng.normal(0, 1, (k, n))
            t = np.abs(b.mean(1) - a.mean(1) + rng.normal(0, math.sqrt(var_img), k))
            va, vb = a.var(1, ddof=1) / n, b.var(1, ddof=1) / n
            t /= np.sqrt(va + vb + var_img)
            ours = degrees_of_freedom(va, vb, n, n, var_img)
            satt = degrees_of_freedom(va, vb, n, n) * ((va + vb + var_img) / (va + vb)) ** 2
            rows.append({"n": n, "share": share, "k": k, "new": rate(t > stats.t.ppf(0.975, ours)),
                         "satterthwaite": rate(t > stats.t.ppf(0.975, satt))})
    return rows


def print_tables(rows, inter, normal, plans):
    print("\nSame recipe on both sides (false wins: 'B better' or 'A better', %) and a true effect of 2 x the run "
          "spread (power, %); 95% level, ± Monte-Carlo standard error")
    print("| ratio (measured) | runs/side | comparisons | false wins, calibrated | false wins, old percentile "
          "| power, calibrated (predicted) | power, old |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ratio']:g} ({r['measured_ratio']:.2f}) | {r['n']} | {r['k']} | {fmt(r['null_new'])} | "
              f"{fmt(r['null_old'])} | {fmt(r['power_new'])} ({100 * r['power_predicted']:.0f}) | {fmt(r['power_old'])} |")
    if inter:
        print("\nInteraction null: recipes equal on the image population that find different images hard "
              "(independent image profiles); false wins, %")
        print("| ratio | runs/side | comparisons | calibrated | Satterthwaite df (image term: infinite df) |")
        print("|---|---|---|---|---|")
        for r in inter:
            print(f"| {r['ratio']:g} | {r['n']} | {r['k']} | {fmt(r['null_new'])} | {fmt(r['null_satterthwaite'])} |")
    if plans:
        print("\nPlanning from a 4-seed pilot of A (seed variance with 3 df): seeds per side planned for 80% power, "
              "and the power the plan really has")
        print("| ratio | delta | planned from | n planned: median (10-90%) | n with the true spread | mean power | "
              "plans reaching 80% |")
        print("|---|---|---|---|---|---|---|")
        for r in plans:
            lo, hi = r["n_q10_q90"]
            print(f"| {r['ratio']:g} | {r['delta']} | {r['rule']} | {r['n_median']:g} ({lo:g}-{hi:g}) | {r['n_true']} | "
                  f"{100 * r['power_mean']:.0f}% | {100 * r['reach_target']:.0f}% |")
    print(f"\nNormal theory: same recipe, normal seed effects, the image term known and 'share' x the run terms; "
          f"false wins, % ({normal[0]['k']:,} comparisons a cell)")
    print("| runs/side | " + " | ".join(f"share {s:g}" for s in SHARES) + " |")
    print("|---|" + "---|" * len(SHARES))
    for n in N_RUNS:
        cells = [r for r in normal if r["n"] == n]
        print(f"| {n}, calibrated | " + " | ".join(f"{100 * r['new'][0]:.1f}" for r in cells) + " |")
        print(f"| {n}, Satterthwaite df | " + " | ".join(f"{100 * r['satterthwaite'][0]:.1f}" for r in cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comparisons", type=int, default=200, help="comparisons per noise ratio (default 200)")
    ap.add_argument("--resamples", type=int, default=150, help="paired image resamples per comparison (default 150)")
    ap.add_argument("--ratios", type=lambda s: [float(x) for x in s.split(",")], default=list(RATIOS),
                    help="run/image noise ratios (default 0,0.5,1,2,5,10)")
    ap.add_argument("--interaction", type=int, default=200, metavar="K",
                    help="comparisons of the interaction null (default 200; 0: skip it)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: one per CPU core)")
    ap.add_argument("--seed", type=int, default=2024, help="random seed of the simulation (default 2024)")
    ap.add_argument("--json", help="write every number to this file")
    args = ap.parse_args()
    SEED[0] = args.seed
    t0, c0 = time.perf_counter(), time.process_time()
    pil = pilot()
    print(f"pilot: run sd at equal quality (run x image only) {pil['floor_sd']:.4f}, image-resample sd of one run "
          f"{pil['img_sd']:.4f}; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows, failed, plans = main_table(pil, args)
    inter = interaction_table(pil, args) if args.interaction else []
    normal = normal_theory_table()
    print_tables(rows, inter, normal, plans)
    print(f"\n{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU in the main process, "
          f"{args.workers} worker(s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"main": rows, "interaction": inter, "normal_theory": normal, "pilot_planning": plans, "pilot": {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in pil.items()}}, indent=1))
    failed += [f"normal theory, {r['n']} runs per side, share {r['share']:g}: {100 * r['new'][0]:.2f}%"
               for r in normal if r["new"][0] > bound(r["k"])]
    if failed:
        print("FAILED: the calibrated test exceeds 5% + 2 Monte-Carlo se in: " + "; ".join(failed))
        return 1
    print("calibrated test: false wins within 5% + 2 Monte-Carlo se in every cell")
    return 0


if __name__ == "__main__":
    sys.exit(main())
