"""Per-image matches give pycocotools' AP (full set and resampled sets); the bootstrap's verdicts on
cases with known answers; the CLI."""

import copy

import numpy as np
import pytest

from smallbox.cli import main
from smallbox.datasets import SizeBuckets, load_coco
from smallbox.evaluate import evaluate
from smallbox.predictions import load_predictions
from smallbox.evaluate.matching import average_precision, match_images, metric_range
from smallbox.analysis.significance import (A_BETTER, B_BETTER, NO_DIFFERENCE, ONE_RUN, bootstrap_difference,
                                            image_weights)

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


def test_same_runs_on_both_sides_give_no_detectable_difference(gt, preds):
    res = bootstrap_difference(gt, preds, preds, metric="AP_small", n=200, seed=0, progress=False)
    lo, hi = res.interval
    assert res.difference == 0.0
    assert lo < 0 < hi and hi - lo < 0.1
    assert res.verdict == NO_DIFFERENCE


def test_ground_truth_as_predictions_is_better_with_two_runs_per_side(gt, preds):
    perfect = [gt_as_predictions(gt), gt_as_predictions(gt, jitter=0.5)]
    res = bootstrap_difference(gt, preds, perfect, metric="AP50", n=100, seed=1, progress=False)
    assert res.b_values == pytest.approx([1.0, 1.0])  # AP50 of the ground truth itself
    assert res.difference > 0.04 and res.interval[0] > 0.03
    assert res.verdict == B_BETTER
    flipped = bootstrap_difference(gt, perfect, preds, metric="AP50", n=100, seed=1, progress=False)
    assert flipped.verdict == A_BETTER


def test_one_run_per_side_never_says_b_better(gt, preds):
    res = bootstrap_difference(gt, preds[:1], [gt_as_predictions(gt)], metric="AP50", n=200, progress=False)
    assert res.interval[0] > 0  # the images alone would call it a win
    assert res.verdict == ONE_RUN
    lopsided = bootstrap_difference(gt, preds, [gt_as_predictions(gt)], metric="AP50", n=100, progress=False)
    assert lopsided.verdict.startswith("cannot tell") and lopsided.verdict != B_BETTER


def test_cli_prints_verdict_and_writes_json(deeppcb_val, deeppcb_predictions, tmp_path, capsys):
    out = tmp_path / "sig.json"
    a, b = map(str, deeppcb_predictions)
    # options may stand anywhere: before the files, among them, after them
    rc = main(["significance", "--n", "50", str(deeppcb_val), a, "--metric", "AP50", "--", b, "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and f"verdict: {ONE_RUN}" in text and "ignores training noise" in text
    assert "metric AP50" in text and "50 resamples" in text
    assert out.is_file()


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
