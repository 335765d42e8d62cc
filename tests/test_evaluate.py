"""The evaluator against pycocotools' own COCOeval.summarize on real predictions."""

import contextlib
import copy
import gzip
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from smallbox.cli import main
from smallbox.datasets import SizeBuckets, load_coco
from smallbox.errors import SmallboxError
from smallbox.evaluate import METRIC_KEYS, evaluate
from smallbox.predictions import load_predictions
from yolo_helpers import pycocotools_stats


def _read_preds(path):
    with gzip.open(path, "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_coco_metrics_equal_pycocotools(backend, deeppcb_val, deeppcb_predictions):
    for pred_path in deeppcb_predictions:
        expected = pycocotools_stats(deeppcb_val, _read_preds(pred_path))
        result = evaluate(deeppcb_val, pred_path, backend=backend)
        got = np.array([result[k] for k in METRIC_KEYS])
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
        assert 0.3 < result["AP_small"] < 0.9  # real predictions: the metric is not trivially 0 or 1


def test_custom_and_fitted_ranges_equal_pycocotools(deeppcb_val, deeppcb_predictions):
    gt = load_coco(deeppcb_val)
    preds = _read_preds(deeppcb_predictions[1])
    fitted = SizeBuckets.fit(gt.areas())
    custom = SizeBuckets.parse("20^2,40^2")
    result = evaluate(gt, preds, [fitted, custom])
    for b in (fitted, custom):
        t0, t1 = b.thresholds
        stats = pycocotools_stats(deeppcb_val, preds, [[0, 1e10], [0, t0], [t0, t1], [t1, 1e10]])
        got = result["buckets"][b.name]
        np.testing.assert_allclose([got["AP_small"], got["AP_medium"], got["AP_large"]], stats[3:6], atol=1e-6)
        np.testing.assert_allclose([got["AR_small"], got["AR_medium"], got["AR_large"]], stats[9:12], atol=1e-6)
    # COCO's own set is reported beside them, and the custom set really differs from it
    assert result["buckets"]["coco"]["AP_small"] == result["AP_small"]
    assert result["buckets"]["custom"]["AP_small"] != pytest.approx(result["AP_small"])


def test_fast_and_reference_backends_agree_per_class(deeppcb_val, deeppcb_predictions):
    fitted = SizeBuckets.fit(load_coco(deeppcb_val).areas())
    a = evaluate(deeppcb_val, deeppcb_predictions[0], fitted, backend="faster", per_class=True)
    b = evaluate(deeppcb_val, deeppcb_predictions[0], fitted, backend="pycocotools", per_class=True)
    assert set(a["per_class"]) == {"open", "short", "mousebite", "spur", "copper", "pin-hole"}
    for name in a["per_class"]:
        for key, value in a["per_class"][name].items():
            assert value == pytest.approx(b["per_class"][name][key], abs=1e-6)
    for key in METRIC_KEYS:
        assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_per_class_ap_equals_pycocotools_restricted_to_that_class(deeppcb_val, deeppcb_predictions):
    preds = _read_preds(deeppcb_predictions[0])
    result = evaluate(deeppcb_val, preds, per_class=True)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(deeppcb_val))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(preds)), "bbox")
        ev.params.catIds = [3]
        ev.evaluate(); ev.accumulate(); ev.summarize()
    assert result["per_class"]["mousebite"]["AP"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert result["per_class"]["mousebite"]["AP_small"] == pytest.approx(ev.stats[3], abs=1e-9)


def test_empty_predictions_score_zero(deeppcb_val):
    result = evaluate(deeppcb_val, [])
    assert result["AP"] == 0 and result["AR_100"] == 0
    assert result["AP_small"] == 0


def test_ground_truth_as_predictions_scores_one(deeppcb_val):
    gt = json.loads(deeppcb_val.read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in gt["annotations"]]
    result = evaluate(gt, preds)
    assert result["AP"] == pytest.approx(1.0) and result["AP_small"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad, message", [
    ({"image_id": 999999, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}, "unknown image id 999999"),
    ({"image_id": 2, "category_id": 42, "bbox": [1, 1, 5, 5], "score": 0.5}, "unknown category id 42"),
    ({"image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "score": float("nan")}, "score nan"),
    ({"image_id": 2, "category_id": 1, "bbox": [1, 1, float("inf"), 5], "score": 0.5}, "not four finite"),
    ({"image_id": 2, "category_id": 1, "bbox": [1, 1, -4, 5], "score": 0.5}, "negative width"),
    ({"image_id": 2, "bbox": [1, 1, 4, 5], "score": 0.5}, "needs image_id, category_id"),
])
def test_bad_predictions_are_named(bad, message, deeppcb_val):
    gt = load_coco(deeppcb_val)
    with pytest.raises(SmallboxError, match=message) as e:
        evaluate(gt, [bad])
    assert "prediction #0" in str(e.value)


def test_eval_cli_writes_json_and_rejects_bad_input(tmp_path, deeppcb_val, deeppcb_predictions, capsys):
    out = tmp_path / "m.json"
    assert main(["eval", str(deeppcb_val), str(deeppcb_predictions[0]), "--areas", "fit", "--per-class", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AP_small" in printed and "fit (" in printed and "mousebite" in printed
    written = json.loads(out.read_text())
    assert set(METRIC_KEYS) <= set(written) and set(written["buckets"]) == {"coco", "fit"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 123456, "category_id": 1, "bbox": [0, 0, 3, 3], "score": 0.9}]))
    assert main(["eval", str(deeppcb_val), str(bad), "--json", str(tmp_path / "no.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "123456" in err and "Traceback" not in err
    assert not (tmp_path / "no.json").exists()


def test_load_predictions_reads_gzip(deeppcb_predictions):
    preds = load_predictions(deeppcb_predictions[0])
    with gzip.open(deeppcb_predictions[0], "rt", encoding="utf-8") as f:
        assert preds == json.load(f) and len(preds) > 1000
