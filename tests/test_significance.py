"""Per-image matches give pycocotools' AP (full set and resampled sets); the calibrated test against
scipy's Welch test and against an independent pycocotools bootstrap; verdicts on cases with known
answers; the planner; the CLI."""

import copy
import json
import math

import numpy as np
import pytest
from scipy import stats
from yolo_helpers import pycocotools_stats

from smallbox.analysis.planning import plan_runs, power, var_run_upper
from smallbox.analysis.significance import (
    A_BETTER,
    B_BETTER,
    NO_DIFFERENCE,
    ONE_RUN,
    calibrated_test,
    compare_runs,
    degrees_of_freedom,
    image_weights,
)
from smallbox.cli import main
from smallbox.datasets import SizeBuckets, load_coco
from smallbox.evaluate import evaluate
from smallbox.evaluate.matching import average_precision, match_images, metric_range
from smallbox.predictions import load_predictions

METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


@pytest.fixture(scope="module")
def gt(deeppcb_val):
    return load_coco(deeppcb_val, check_files=False)


@pytest.fixture(scope="module")
def preds(deeppcb_predictions):
    return [load_predictions(p) for p in deeppcb_predictions]


def gt_as_predictions(gt, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image_id": a["image_id"], "category_id": a["category_id"],
             "bbox": [v + rng.uniform(-jitter, jitter) for v in a["bbox"][:2]] + list(a["bbox"][2:]), "score": 1.0}
            for a in gt.annotations]


def reference(gt_data, preds, buckets):
    """pycocotools' numbers, keyed like metric_range's metrics, for COCO's and ``buckets``' ranges."""
    res = evaluate(gt_data, preds, buckets, backend="pycocotools")
    return {b: {m: (res[m] if b == "coco" or not m.startswith("AP_") else res["buckets"][b][m]) for m in METRICS}
            for b in ("coco", buckets.name)}


def matches_metrics(gt_data, preds, buckets, weights=None):
    specs = {(b.name, m): metric_range(m, b) for b in (SizeBuckets.coco(), buckets) for m in METRICS}
    ranges = sorted({r for r, _ in specs.values()})
    matched = dict(zip(ranges, match_images(gt_data, preds, ranges)))
    out = {"coco": {}, buckets.name: {}}
    for (b, m), (r, iou) in specs.items():
        out[b][m] = float(average_precision(matched[r], weights, iou=iou)[0])
    return out


def assert_same(ours, ref):
    for b in ref:
        for m in METRICS:
            assert ours[b][m] == pytest.approx(ref[b][m], abs=1e-9), (b, m, ours[b][m], ref[b][m])


def test_matches_ap_equals_pycocotools_on_bundled_predictions(gt, preds):
    fit = SizeBuckets.fit(gt.areas())
    for p in preds:
        assert_same(matches_metrics(gt.data, p, fit), reference(gt.data, p, fit))


def test_matches_ap_respects_crowd_and_max_dets(gt, preds):
    """Crowd boxes (ignored, matchable many times) and more than 100 detections per image and
    category (COCO keeps the 100 best) change AP: both must match pycocotools."""
    data = copy.deepcopy(gt.subset([im["id"] for im in gt.images[:40]]).data)
    for a in data["annotations"][::5]:
        a["iscrowd"] = 1
    keep = {im["id"] for im in data["images"]}
    rng = np.random.default_rng(1)
    dets = [p for p in preds[0] if p["image_id"] in keep]
    crowded = [{**p, "bbox": [v + rng.normal(0, 2) for v in p["bbox"][:2]] + p["bbox"][2:], "score": p["score"] * rng.uniform(0.5, 1)}
               for p in dets for _ in range(4)]
    per_image_cat = np.unique([(p["image_id"], p["category_id"]) for p in crowded], axis=0, return_counts=True)[1]
    assert per_image_cat.max() > 100
    custom = SizeBuckets.parse("24^2,40^2")
    assert_same(matches_metrics(data, crowded, custom), reference(data, crowded, custom))


def resampled_dataset(data, preds, weights):
    """The image set of ``weights`` as a COCO dataset: the k-th copy of an image gets a new id."""
    images, anns, out = [], [], []
    by_id = sorted(data["images"], key=lambda im: im["id"])
    next_id, next_ann = 1, 1
    for im, count in zip(by_id, weights):
        for _ in range(count):
            images.append({**im, "id": next_id})
            for a in data["annotations"]:
                if a["image_id"] == im["id"]:
                    anns.append({**a, "id": next_ann, "image_id": next_id})
                    next_ann += 1
            out += [{**p, "image_id": next_id} for p in preds if p["image_id"] == im["id"]]
            next_id += 1
    return {**data, "images": images, "annotations": anns}, out


def test_resampled_ap_equals_cocoeval_on_duplicated_images(gt, preds):
    data = gt.subset([im["id"] for im in gt.images[:30]]).data
    keep = {im["id"] for im in data["images"]}
    p = [x for x in preds[1] if x["image_id"] in keep]
    weights = image_weights(np.random.default_rng(3), 3, len(data["images"]))
    assert (weights > 1).any() and (weights == 0).any()
    custom = SizeBuckets.parse("28^2,36^2")
    for w in weights:
        big, big_preds = resampled_dataset(data, p, w)
        assert_same(matches_metrics(data, p, custom, w[None, :]), reference(big, big_preds, custom))


def jitter_scores(preds, seed, spread=0.1):
    """Another prediction set of the same model: scores scaled by up to ±spread (a stand-in seed)."""
    rng = np.random.default_rng(seed)
    return [{**p, "score": float(min(1.0, p["score"] * rng.uniform(1 - spread, 1 + spread)))} for p in preds]


def test_same_runs_on_both_sides_give_no_detectable_difference(gt, preds):
    res = compare_runs(gt, preds, preds, metric="AP_small", n=200, seed=0, progress=False)
    lo, hi = res.interval
    assert res.difference == 0.0 and res.var_images_paired == 0.0
    assert lo < 0 < hi
    assert res.verdict == NO_DIFFERENCE


def test_ground_truth_as_predictions_is_better_with_two_runs_per_side(gt, preds):
    perfect = [gt_as_predictions(gt), gt_as_predictions(gt, jitter=0.5)]
    runs = [preds[1], jitter_scores(preds[1], 1)]
    res = compare_runs(gt, runs, perfect, metric="AP50", n=100, seed=1, progress=False)
    assert res.b_values == pytest.approx([1.0, 1.0])  # AP50 of the ground truth itself
    assert res.difference > 0.04 and res.interval[0] > 0
    assert res.verdict == B_BETTER and res.df_rule == "auto" and "Welch t over runs" in res.method
    flipped = compare_runs(gt, perfect, runs, metric="AP50", n=100, seed=1, progress=False)
    assert flipped.verdict == A_BETTER


def test_one_run_per_side_never_says_b_better(gt, preds):
    res = compare_runs(gt, preds[:1], [gt_as_predictions(gt)], metric="AP50", n=200, progress=False)
    assert res.interval[0] > 0  # the images alone would call it a win
    assert res.verdict == ONE_RUN and not res.runs_counted and res.p_value is None
    lopsided = compare_runs(gt, preds, [gt_as_predictions(gt)], metric="AP50", n=100, progress=False)
    assert lopsided.verdict == "cannot tell: one run on side B"


def test_runs_only_equals_scipy_welch_and_hsu():
    """No image noise (every resample equals the full set): the interval is Welch's t interval
    from scipy; with unequal counts "auto" takes Hsu's min(n) - 1 df."""
    a, b = [0.659, 0.521, 0.527, 0.568], [0.60, 0.62, 0.71, 0.64]
    res = calibrated_test(a, b, np.tile(a, (50, 1)), np.tile(b, (50, 1)))
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.interval == pytest.approx((ci.low, ci.high), rel=1e-9)
    three = calibrated_test(a, b[:3], np.tile(a, (50, 1)), np.tile(b[:3], (50, 1)))
    assert three.df == 2 and "Hsu" in three.method
    assert calibrated_test(a, b[:3], np.tile(a, (50, 1)), np.tile(b[:3], (50, 1)), df="welch").df > 2


def test_image_term_is_the_paired_variance_less_the_run_by_image_part():
    """Y*_sr = Y_sr + g_s + h_sr exactly: V_boot = 2 g² + h² (1/n_A + 1/n_B); the test adds 2 g²."""
    rng = np.random.default_rng(0)
    n_a, n_b, g, h, B = 3, 4, 0.01, 0.02, 4000
    a, b = rng.normal(0.5, 0.05, n_a), rng.normal(0.5, 0.05, n_b)
    a_res = a + rng.normal(0, g, (B, 1)) + rng.normal(0, h, (B, n_a))
    b_res = b + rng.normal(0, g, (B, 1)) + rng.normal(0, h, (B, n_b))
    res = calibrated_test(a, b, a_res, b_res, df="welch")
    assert res.var_interaction == pytest.approx(h ** 2 * (1 / n_a + 1 / n_b), rel=0.1)
    assert res.var_images_paired == pytest.approx(2 * g ** 2 + h ** 2 * (1 / n_a + 1 / n_b), rel=0.1)
    assert res.var_images == pytest.approx(2 * g ** 2, rel=0.2)
    assert res.se ** 2 == pytest.approx(np.var(a, ddof=1) / n_a + np.var(b, ddof=1) / n_b + res.var_images)


def test_interval_equals_an_independent_pycocotools_bootstrap(gt, preds):
    """Issue 15: the interval rebuilt here from pycocotools alone. Each resample is a real dataset
    (drawn images duplicated under new ids) scored by COCOeval; D, the run variances, the paired
    bootstrap variance, the run x image part, the degrees of freedom and the t quantile are
    written out below; only the image draws are shared (``image_weights`` with the same seed,
    column i = the i-th smallest image id, as the matcher orders images)."""
    small = gt.subset([im["id"] for im in gt.images[:25]])
    data = small.data
    keep = {im["id"] for im in data["images"]}
    a_runs = [[p for p in preds[0] if p["image_id"] in keep]]
    b_runs = [[p for p in preds[1] if p["image_id"] in keep]]
    a_runs.append(jitter_scores(a_runs[0], 3, 0.3))
    b_runs.append(jitter_scores(b_runs[0], 4, 0.3))
    n_res, seed = 12, 5
    res = compare_runs(small, a_runs, b_runs, metric="AP_small", n=n_res, seed=seed, progress=False)

    weights = image_weights(np.random.default_rng(seed), n_res, len(data["images"]))
    ordered = dict(data, images=sorted(data["images"], key=lambda im: im["id"]))
    full = {s: [pycocotools_stats(data, p)[3] for p in runs] for s, runs in (("A", a_runs), ("B", b_runs))}
    boot = {s: np.array([[pycocotools_stats(*resampled_dataset(ordered, p, w))[3] for p in runs] for w in weights])
            for s, runs in (("A", a_runs), ("B", b_runs))}
    assert res.a_values == pytest.approx(full["A"], abs=1e-9) and res.b_values == pytest.approx(full["B"], abs=1e-9)
    d = np.mean(full["B"]) - np.mean(full["A"])
    var_a, var_b = np.var(full["A"], ddof=1) / 2, np.var(full["B"], ddof=1) / 2
    v_boot = np.var(boot["B"].mean(1) - boot["A"].mean(1), ddof=1)
    # run x image variance: across runs, the spread of each run's deviation from its own mean over resamples
    h = {s: np.mean([np.var(row - boot[s].mean(0), ddof=1) for row in boot[s]]) * n_res / (n_res - 1) for s in boot}
    v_img = max(0.0, v_boot - h["A"] / 2 - h["B"] / 2)
    var = var_a + var_b + v_img
    nu = (var_a + var_b) ** 2 / (var_a ** 2 + var_b ** 2) * var / (var_a + var_b)  # Welch's run df x total / runs
    half = stats.t.ppf(0.975, nu) * np.sqrt(var)
    assert res.var_images_paired == pytest.approx(v_boot, rel=1e-6)
    assert res.var_images == pytest.approx(v_img, rel=1e-6, abs=1e-12)
    assert res.df == pytest.approx(nu, rel=1e-6)
    assert res.interval == pytest.approx((d - half, d + half), rel=1e-6)


def test_cli_prints_method_numbers_and_verdict_and_writes_every_number(deeppcb_val, deeppcb_predictions, tmp_path, capsys):
    out = tmp_path / "sig.json"
    a, b = map(str, deeppcb_predictions)
    # options may stand anywhere: before the files, among them, after them
    rc = main(["significance", "--n", "50", str(deeppcb_val), a, "--metric", "AP50", "--", b, "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and f"verdict: {ONE_RUN}" in text and "ignores training noise" in text
    assert "metric AP50" in text and "50 paired image resamples" in text and "method: paired image bootstrap only" in text
    saved = json.loads(out.read_text())
    assert saved["verdict"] == ONE_RUN and saved["n_resamples"] == 50 and saved["a"] == [a]


def test_cli_plan_answers_seeds_per_side(deeppcb_val, deeppcb_predictions, tmp_path, capsys):
    a, b = map(str, deeppcb_predictions)
    a2, b2 = tmp_path / "a2.json", tmp_path / "b2.json"
    a2.write_text(json.dumps(jitter_scores(load_predictions(a), 1, 0.3)))
    b2.write_text(json.dumps(jitter_scores(load_predictions(b), 2, 0.3)))
    out = tmp_path / "plan.json"
    rc = main(["significance", str(deeppcb_val), a, str(a2), "--", b, str(b2), "--n", "100", "--plan", "--delta", "0.02",
               "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "plan: seeds per side to detect |B - A| = 0.0200 AP_small with 80% power" in text
    plan = json.loads(out.read_text())["plan"]
    point, upper = plan["point"], plan["upper"]
    assert "from the measured spread:" in text and "from its upper bound" in text
    for p in (point, upper):
        assert (p["n"] is None and "test images" in p["reason"]) or p["power_at_n"] >= 0.8
    assert plan["var_run_upper"] > plan["var_run"] and plan["df_run"] == 2
    # the two bundled models as the 'runs' of nothing: one run per side cannot plan
    assert main(["significance", str(deeppcb_val), a, "--", b, "--plan", "--delta", "0.02"]) == 2
    assert "2+ runs" in capsys.readouterr().err
    assert main(["significance", str(deeppcb_val), a, str(a2), "--", b, "--plan"]) == 2
    assert "--plan needs --delta" in capsys.readouterr().err


def test_planner_is_smallest_n_and_says_when_only_images_help():
    s2 = 0.0637 ** 2  # DeepPCB YOLOv8s 640/60, four seeds (issue 12)
    plan = plan_runs(0.10, s2)
    assert plan.n is not None and plan.power_at_n >= 0.8 > power(0.10, plan.n - 1, s2)
    assert plan.n >= math.ceil(plan.n_normal)
    hopeless = plan_runs(0.02, s2, var_img=0.01 ** 2)
    assert hopeless.n is None and "add test images" in hopeless.reason and hopeless.min_detectable > 0.02
    assert var_run_upper(s2, 3, 0.8) == pytest.approx(s2 * 3 / stats.chi2.ppf(0.2, 3))


def normal_runs(rng, n, k, delta, var_img):
    """``k`` comparisons of ``n`` normal runs (variance 1) per side and the test set's luck
    ``g ~ N(0, var_img)``: ``D``, ``s²_A/n``, ``s²_B/n``."""
    a, b = rng.normal(0, 1, (k, n)), rng.normal(delta, 1, (k, n))
    d = b.mean(1) - a.mean(1) + rng.normal(0, math.sqrt(var_img), k)
    return d, a.var(1, ddof=1) / n, b.var(1, ddof=1) / n


def test_power_matches_a_normal_simulation_of_the_test():
    """The test on normal runs with var_img known: its simulated power equals power()."""
    rng = np.random.default_rng(2)
    var_img, delta, k = 0.1, 2.0, 4000
    for n in (2, 3, 5):
        d, va, vb = normal_runs(rng, n, k, delta, var_img)
        nu = (va + vb) ** 2 / ((va ** 2 + vb ** 2) / (n - 1)) * (va + vb + var_img) / (va + vb)
        hits = np.abs(d) / np.sqrt(va + vb + var_img) > stats.t.ppf(0.975, nu)
        assert hits.mean() == pytest.approx(power(delta, n, 1.0, var_img), abs=0.03), n


def test_df_rule_keeps_false_wins_at_5_percent_where_satterthwaite_does_not():
    """Same recipe, normal seeds, the image term 0 to 100 x the run terms: the product's df keep the
    false-win rate at or under 5%; Satterthwaite's plug-in df (image term with infinite df) reach
    6.3% at 2 runs per side when the image term is 10-30% of the run terms."""
    rng = np.random.default_rng(3)
    k = 200_000
    for n in (2, 3, 5):
        for share in (0.0, 0.1, 0.3, 1.0, 10.0, 100.0):
            var_img = share * 2 / n
            d, va, vb = normal_runs(rng, n, k, 0.0, var_img)
            t = np.abs(d) / np.sqrt(va + vb + var_img)
            size = (t > stats.t.ppf(0.975, degrees_of_freedom(va, vb, n, n, var_img))).mean()
            assert size <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / k), (n, share, size)
            if n == 2 and share == 0.3:
                satterthwaite = (va + vb + var_img) ** 2 / (va ** 2 + vb ** 2)
                assert (t > stats.t.ppf(0.975, satterthwaite)).mean() > 0.06


def test_cli_errors_exit_2_without_traceback(deeppcb_val, deeppcb_predictions, tmp_path, capsys):
    a = str(deeppcb_predictions[0])
    assert main(["significance", str(deeppcb_val), a, a]) == 2
    assert "separate" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]')
    assert main(["significance", str(deeppcb_val), a, "--", str(bad), "--n", "20"]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "99999" in err and "Traceback" not in err


def test_same_file_twice_is_not_a_second_seed(deeppcb_val, deeppcb_predictions, capsys):
    a, b = map(str, deeppcb_predictions)
    assert main(["significance", str(deeppcb_val), a, a, "--", b, b, "--n", "20"]) == 2
    assert "different training run" in capsys.readouterr().err


def test_holm_adjusted_p_values_by_hand():
    """Holm (1979): sorted p = 0.005, 0.01, 0.03, 0.04 (m = 4) -> 4*0.005 = 0.02, 3*0.01 = 0.03,
    2*0.03 = 0.06, max(0.06, 1*0.04) = 0.06; an untested arm (None) is not in the family."""
    from smallbox.analysis.significance import holm

    assert holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1, and monotone
    assert holm([]) == [] and holm([None]) == [None]


def test_the_corrected_verdict_follows_the_adjusted_p():
    from smallbox.analysis.significance import A_BETTER, B_BETTER, NO_DIFFERENCE, calibrated_test, corrected_verdict

    rng = np.random.default_rng(0)
    res = calibrated_test([0.10, 0.11, 0.12], [0.20, 0.21, 0.22], rng.normal(0.11, 0.001, (200, 3)),
                          rng.normal(0.21, 0.001, (200, 3)))
    assert res.verdict == B_BETTER and res.p_value < 0.01
    assert corrected_verdict(res, res.p_value * 3) == B_BETTER
    assert corrected_verdict(res, 0.2) == NO_DIFFERENCE  # significant alone, not after the correction
    worse = calibrated_test([0.20, 0.21, 0.22], [0.10, 0.11, 0.12], rng.normal(0.21, 0.001, (200, 3)),
                            rng.normal(0.11, 0.001, (200, 3)))
    assert corrected_verdict(worse, worse.p_value) == A_BETTER
