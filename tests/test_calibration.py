"""The calibration suite in small (bench/bench_calibration.py has the full table): simulated runs
scored with real COCO matching (tests/simulated_runs.py). Same-recipe comparisons with 2 runs per
side at a run/image noise ratio of 5: the calibrated test's false wins stay under 5% + 2
Monte-Carlo standard errors while the percentile two-level bootstrap it replaced is far above;
its power at 3 runs per side against a true effect of 2 x the run spread is what the planner
predicts; `smallbox significance` on files of such runs agrees with it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from simulated_runs import Params, Side, check_against_pycocotools, make_run, make_world, percentile_two_level, simulate_comparison

from smallbox.analysis.planning import power
from smallbox.analysis.significance import B_BETTER, NO_DIFFERENCE, calibrated_test
from smallbox.cli import main

# level_settings(pilot(), 5.0) (printed by bench/bench_calibration.py): the run effect's sd on the
# logit scale giving a run/image noise ratio of 5, and B's quality shift giving E[AP_B] - E[AP_A]
# = 2 x the run spread.
SIGMA_RUN, DQ = 0.354, 0.792
K, N_RESAMPLES = 60, 100


def bound(k: int, p: float = 0.05) -> float:
    return p + 2 * math.sqrt(p * (1 - p) / k)


@pytest.fixture(scope="module")
def comparisons():
    """K comparisons, each on a new test set of 300 images: 3 runs of A, 2 more of A, 3 of B = A + effect."""
    sides = [Side("A", 3), Side("A2", 2), Side("B", 3, dq=DQ)]
    return [simulate_comparison([99, c], SIGMA_RUN, sides, N_RESAMPLES) for c in range(K)]


def test_simulated_ap_small_equals_pycocotools():
    for ours, ref in check_against_pycocotools(seed=5, n_runs=2):
        assert ours == pytest.approx(ref, abs=1e-12)


def first(side, n):
    return side[0][:n], side[1][:, :n]


def test_same_recipe_two_runs_per_side_calibrated_where_the_old_bootstrap_is_not(comparisons):
    rng = np.random.default_rng(1)
    new = old = 0
    for c in comparisons:
        (fa, ra), (fb, rb) = first(c["A"], 2), first(c["A2"], 2)
        new += calibrated_test(fa, fb, ra, rb).verdict != NO_DIFFERENCE
        lo, hi = percentile_two_level(ra, rb, rng)
        old += lo > 0 or hi < 0
    assert new / K <= bound(K)  # 10.6% at K = 60; about 2% in the full table
    assert old / K >= 0.2  # about 33% in the full table


def test_power_at_three_runs_is_what_the_planner_predicts(comparisons):
    same = np.array([np.concatenate([c["A"][0], c["A2"][0]]) for c in comparisons])
    var_run = float(np.mean(same.var(axis=1, ddof=1)))
    var_b = float(np.mean([c["B"][0].var(ddof=1) for c in comparisons]))
    delta = float(np.mean([c["B"][0].mean() for c in comparisons]) - same.mean())
    assert delta / math.sqrt(var_run) == pytest.approx(2, abs=0.5)
    hits = [calibrated_test(c["A"][0], c["B"][0], c["A"][1], c["B"][1]).verdict == B_BETTER for c in comparisons]
    predicted = power(delta, 3, var_run, 0.0, var_run_b=var_b)
    assert np.mean(hits) == pytest.approx(predicted, abs=3 * math.sqrt(predicted * (1 - predicted) / K))


def test_cli_on_two_runs_of_one_recipe_per_side(tmp_path, capsys):
    """The files a user would have: a ground truth and one predictions file per run. On 10 such
    same-recipe comparisons `smallbox significance` says what calibrated_test says, and a win at
    most as often as 5% + 2 Monte-Carlo se allows (none expected: about 2% of comparisons)."""
    p = Params()
    wins = 0
    for c in range(10):
        rng = np.random.default_rng([7, c])
        world = make_world(p, rng)
        gt = tmp_path / f"gt{c}.json"
        gt.write_text(json.dumps(world.gt))
        files = []
        for r in range(4):
            path = tmp_path / f"c{c}_run{r}.json"
            path.write_text(json.dumps(make_run(world, p.q0 + SIGMA_RUN * rng.normal(), rng)))
            files.append(str(path))
        out = tmp_path / f"c{c}.json"
        assert main(["significance", str(gt), *files[:2], "--", *files[2:], "--n", "100", "--json", str(out)]) == 0
        saved = json.loads(out.read_text())
        text = capsys.readouterr().out
        assert f"verdict: {saved['verdict']}" in text and "Welch t over runs" in text
        lo, hi = saved["interval"]
        assert saved["verdict"] == (NO_DIFFERENCE if lo <= 0 <= hi else "B better" if lo > 0 else "A better")
        wins += saved["verdict"] != NO_DIFFERENCE
    assert wins / 10 <= bound(10)
