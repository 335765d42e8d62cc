"""smallbox ensemble against ensemble_boxes (the reference) on the two real DeepPCB prediction
files, size gating, the competition CSV, and bad inputs."""

from __future__ import annotations

import csv
import gzip
import json
import math
import warnings

import numpy as np
import pytest

import ensemble_boxes  # noqa: E402  (the reference: a missing one fails the suite, never skips it)

from smallbox.cli import main  # noqa: E402
from smallbox.datasets import load_coco  # noqa: E402
from smallbox.fusion.ensemble import ensemble_predictions, fuse, gate, to_detections  # noqa: E402


@pytest.fixture(scope="module")
def members(deeppcb_predictions):
    return [json.load(gzip.open(p, "rt")) for p in deeppcb_predictions]


@pytest.fixture(scope="module")
def images(deeppcb_val):
    return load_coco(deeppcb_val, check_files=False).images


def reference(members, images, which, **kw):
    """What a user of ensemble_boxes gets: per image, every model's boxes (in file order)
    normalised by the image size, fused, then multiplied back. Returns ``[(image id, label,
    xyxy_norm, score)]`` in ensemble_boxes' order."""
    by_image = [{} for _ in members]
    for m, preds in enumerate(members):
        for p in preds:
            by_image[m].setdefault(p["image_id"], []).append(p)
    fn = {"wbf": ensemble_boxes.weighted_boxes_fusion, "nms": ensemble_boxes.nms,
          "soft-nms": ensemble_boxes.soft_nms, "nmw": ensemble_boxes.non_maximum_weighted}[which]
    out = []
    for im in images:
        w, h = im["width"], im["height"]
        boxes, scores, labels = [], [], []
        for m in range(len(members)):
            ps = by_image[m].get(im["id"], [])
            boxes.append(np.array([[p["bbox"][0] / w, p["bbox"][1] / h, (p["bbox"][0] + p["bbox"][2]) / w,
                                    (p["bbox"][1] + p["bbox"][3]) / h] for p in ps]).reshape(-1, 4))
            scores.append(np.array([p["score"] for p in ps]))
            labels.append(np.array([p["category_id"] for p in ps]))
        if not sum(len(s) for s in scores):
            continue  # ensemble_boxes.nms fails on an image without boxes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b, s, lab = fn(boxes, scores, labels, **kw)
        out += [(im["id"], int(la), np.asarray(bb, dtype=np.float64), float(sc)) for bb, sc, la in zip(b, s, lab)]
    return out


def fused_arrays(members, images, method, gates=None, **kw):
    """smallbox's fusion before the COCO export: (image id, label, xyxy_norm, score) per box."""
    if gates is not None:
        members = [gate(p, g) for p, g in zip(members, gates)]
    index = {im["id"]: k for k, im in enumerate(images)}
    sizes = np.array([[im["width"], im["height"]] for im in images], dtype=np.float64)
    fused = fuse(to_detections(members, index, sizes), len(members), method, **kw)
    ids = [images[i]["id"] for i in fused.image.tolist()]
    return list(zip(ids, fused.label.tolist(), fused.xyxy_norm, fused.score.tolist()))


def assert_same(ours, ref, images, members=None, method=None, **kw):
    """The COCO results equal ensemble_boxes' output up to the export's rounding (1/1000 px, 5
    decimals), same images, labels and order; before the export (``members`` given) bit for bit."""
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    assert len(ours) == len(ref)
    assert [p["image_id"] for p in ours] == [r[0] for r in ref]
    assert [p["category_id"] for p in ours] == [r[1] for r in ref]
    ours_scores = np.array([p["score"] for p in ours])
    assert np.abs(ours_scores - np.array([r[3] for r in ref])).max() <= 5e-6 + 1e-12
    x, y, bw, bh = np.array([p["bbox"] for p in ours]).T
    w, h = np.array([size[p["image_id"]] for p in ours]).T
    ref_abs = np.array([r[2] for r in ref]) * np.stack([w, h, w, h], axis=1)
    ours_abs = np.stack([x, y, x + bw, y + bh], axis=1)
    assert np.abs(ours_abs - ref_abs).max() <= 1e-3 + 1e-9  # x and w each rounded to 1/1000 px
    if members is not None:
        exact = fused_arrays(members, images, method, **kw)
        assert [e[:2] for e in exact] == [r[:2] for r in ref]
        assert np.array_equal(np.array([e[3] for e in exact]), np.array([r[3] for r in ref]))
        # ensemble_boxes' NMW returns float32 boxes: compare in its own precision there
        ref_boxes = np.array([r[2] for r in ref])
        assert np.array_equal(np.array([e[2] for e in exact]).astype(ref_boxes.dtype), ref_boxes)


CASES = [
    ("wbf", {}, {}),
    ("wbf", dict(weights=[2, 1], iou_thr=0.6, skip_box_thr=0.05, conf_type="max"),
     dict(weights=[2, 1], iou_thr=0.6, skip_box_thr=0.05, conf_type="max")),
    ("wbf", dict(weights=[1, 3], conf_type="box_and_model_avg"), dict(weights=[1, 3], conf_type="box_and_model_avg")),
    ("wbf", dict(weights=[1, 2], conf_type="absent_model_aware_avg", allows_overflow=True),
     dict(weights=[1, 2], conf_type="absent_model_aware_avg", allows_overflow=True)),
    ("nms", {}, {}),
    ("nms", dict(weights=[2, 1], iou_thr=0.6), dict(weights=[2, 1], iou_thr=0.6)),
    ("soft-nms", {}, {}),
    ("soft-nms", dict(weights=[1, 2], soft_method="linear", iou_thr=0.4, thresh=0.01, sigma=0.3),
     dict(weights=[1, 2], method=1, iou_thr=0.4, thresh=0.01, sigma=0.3)),
    ("nmw", {}, {}),
    ("nmw", dict(weights=[3, 1], iou_thr=0.5, skip_box_thr=0.02), dict(weights=[3, 1], iou_thr=0.5, skip_box_thr=0.02)),
]


@pytest.mark.parametrize("method,ours_kw,ref_kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_parity_with_ensemble_boxes_on_real_predictions(members, images, method, ours_kw, ref_kw):
    ours = ensemble_predictions(members, images, method, **ours_kw)
    assert_same(ours, reference(members, images, method, **ref_kw), images, members, method, **ours_kw)


@pytest.mark.parametrize("method", ["wbf", "nms", "soft-nms", "nmw"])
def test_parity_with_equal_scores(members, images, method):
    """Scores rounded to one decimal: many ties, inside groups of more than 15 boxes too, where
    the order ensemble_boxes' sorts give equal scores decides which box leads a cluster."""
    few = images[:40]
    keep = {im["id"] for im in few}
    rounded = [[{**p, "score": round(p["score"], 1) + 0.05} for p in m if p["image_id"] in keep] for m in members]
    ours = ensemble_predictions(rounded, few, method)
    assert_same(ours, reference(rounded, few, method), few, rounded, method)


def test_gating_keeps_only_in_range_boxes(members, images):
    """Specialist: boxes under 32² only; full model: the rest. Equal to ensemble_boxes on inputs
    filtered by hand, and the specialist alone contributes only small boxes."""
    small = 32.0**2
    ours = ensemble_predictions(members, images, "nms", gates=[(0.0, small), (small, math.inf)])
    by_hand = [[p for p in members[0] if p["bbox"][2] * p["bbox"][3] < small],
               [p for p in members[1] if p["bbox"][2] * p["bbox"][3] >= small]]
    assert 0 < len(by_hand[0]) < len(members[0])
    assert_same(ours, reference(by_hand, images, "nms"), images, by_hand, "nms")
    alone = ensemble_predictions(members[:1], images, "nms", gates=[(0.0, small)])
    areas = np.array([p["bbox"][2] * p["bbox"][3] for p in alone])
    assert len(alone) and areas.max() < small + 1e-6


def test_cli_specialist_range_equals_explicit_gates(tmp_path, deeppcb_predictions, deeppcb_val):
    outs = []
    for name, extra in (("a", ["--specialist-range", "small"]), ("b", ["--gate", "small", "medium+large"]),
                        ("c", ["--gate", "s:0:32^2", "rest:1024:inf"])):
        out = tmp_path / f"{name}.json"
        assert main(["ensemble", *map(str, deeppcb_predictions), "--gt", str(deeppcb_val), "--method", "wbf",
                     "--out", str(out), *extra]) == 0
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1] == outs[2]
    ungated = ensemble_predictions([json.load(gzip.open(p, "rt")) for p in deeppcb_predictions],
                                   load_coco(deeppcb_val, check_files=False).images, "wbf")
    assert len(outs[0]) != len(ungated)


def _parse_csv(path):
    rows = list(csv.DictReader(open(path, newline="")))
    return {r["image_id"]: np.array(r["PredictionString"].split(), dtype=float).reshape(-1, 6) for r in rows}


def test_competition_csv_in_and_out_like_the_teams_script(tmp_path, members, images, deeppcb_val):
    """Their experiment: ensemble_boxes.nms (IoU 0.5) on competition CSVs. CSVs in, CSV out,
    compared with that script done by hand on the same CSV files."""
    from smallbox.predictions import write_competition_csv

    cats = sorted(c["id"] for c in load_coco(deeppcb_val, check_files=False).categories)
    names = {im["id"]: im["file_name"] for im in images}
    paths = [tmp_path / f"m{i}.csv" for i in range(2)]
    for m, path in zip(members, paths):
        write_competition_csv(m, path, names, cats)
    out_csv = tmp_path / "fused.csv"
    assert main(["ensemble", *map(str, paths), "--gt", str(deeppcb_val), "--method", "nms", "--iou", "0.5",
                 "--out", str(tmp_path / "fused.json"), "--csv", str(out_csv)]) == 0
    ours = _parse_csv(out_csv)
    inputs = [_parse_csv(p) for p in paths]
    assert set(ours) == set(names.values())
    size = {im["file_name"]: (im["width"], im["height"]) for im in images}
    for name, got in ours.items():
        w, h = size[name]
        parts = [x[name] for x in inputs]
        if not sum(len(p) for p in parts):
            assert not len(got)
            continue
        b, s, lab = ensemble_boxes.nms([p[:, 2:] / [w, h, w, h] for p in parts], [p[:, 1] for p in parts],
                                       [p[:, 0] for p in parts], iou_thr=0.5)
        want = np.column_stack([lab, s, b * [w, h, w, h]])
        want = want[np.lexsort((-want[:, 1], want[:, 0]))]
        got = got[np.lexsort((-got[:, 1], got[:, 0]))]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_image_without_boxes_in_any_member_is_fine(tmp_path, members, images, deeppcb_val):
    empty_id = images[0]["id"]
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.json")
        paths[-1].write_text(json.dumps([p for p in m if p["image_id"] != empty_id]))
    out, out_csv = tmp_path / "o.json", tmp_path / "o.csv"
    assert main(["ensemble", *map(str, paths), "--gt", str(deeppcb_val), "--out", str(out), "--csv", str(out_csv)]) == 0
    fused = json.loads(out.read_text())
    assert fused and all(p["image_id"] != empty_id for p in fused)
    assert _parse_csv(out_csv)[images[0]["file_name"]].size == 0


def _bad(tmp_path, capsys, preds_list, *extra, gt=None):
    paths = []
    for i, preds in enumerate(preds_list):
        paths.append(tmp_path / f"bad{i}.json")
        paths[-1].write_text(preds if isinstance(preds, str) else json.dumps(preds))
    out = tmp_path / "out.json"
    source = ["--gt", str(gt)] if gt else []
    code = main(["ensemble", *map(str, paths), *source, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and "Traceback" not in err
    return err


def test_bad_inputs(tmp_path, capsys, members, deeppcb_val):
    a, b = members[0][:300], members[1][:300]
    err = _bad(tmp_path, capsys, [a, [{**b[0], "image_id": 999999}] + b[1:]], gt=deeppcb_val)
    assert "bad1.json" in err and "unknown image id 999999" in err
    err = _bad(tmp_path, capsys, [a, [{**b[0], "category_id": 0}] + b[1:]], gt=deeppcb_val)
    assert "unknown category id 0" in err
    err = _bad(tmp_path, capsys, [a, []], gt=deeppcb_val)
    assert "bad1.json" in err and "empty" in err
    err = _bad(tmp_path, capsys, [a, ""], gt=deeppcb_val)
    assert "bad1.json" in err and "not valid json" in err
    err = _bad(tmp_path, capsys, [a, json.dumps(b).replace(str(b[3]["score"]), "NaN", 1)], gt=deeppcb_val)
    assert "not a finite number" in err and f"image {b[3]['image_id']}" in err
    ids_a = {p["image_id"] for p in a}
    other = [p for p in members[1] if p["image_id"] not in ids_a]
    err = _bad(tmp_path, capsys, [a, other], gt=deeppcb_val)
    assert "different images" in err
    err = _bad(tmp_path, capsys, [a, b], "--weights", "1", gt=deeppcb_val)
    assert "--weights" in err


def test_bad_class_sets_without_ground_truth(tmp_path, capsys, members, images, deeppcb_images):
    """With only an image folder (ids 1..N by file name, the rule of every smallbox command), a
    0-based and a 1-based export of the same classes are caught."""
    files = sorted(p.name for p in deeppcb_images.iterdir())
    folder_id = {im["id"]: files.index(im["file_name"]) + 1 for im in images}
    keep = set(list(folder_id)[:5])
    a = [{**p, "image_id": folder_id[p["image_id"]]} for p in members[0] if p["image_id"] in keep]
    b = [{**p, "image_id": folder_id[p["image_id"]], "category_id": p["category_id"] - 1}
         for p in members[1] if p["image_id"] in keep]
    err = _bad(tmp_path, capsys, [a, b], "--images", str(deeppcb_images))
    assert "class sets" in err
    out = tmp_path / "ok.json"
    ok = [{**p, "image_id": folder_id[p["image_id"]]} for p in members[1] if p["image_id"] in keep]
    (tmp_path / "ok1.json").write_text(json.dumps(ok))
    assert main(["ensemble", str(tmp_path / "bad0.json"), str(tmp_path / "ok1.json"), "--images",
                 str(deeppcb_images), "--out", str(out)]) == 0
    assert {p["image_id"] for p in json.loads(out.read_text())} <= {folder_id[i] for i in keep}
