"""smallbox ensemble against ensemble_boxes (the reference): parity on the two real DeepPCB
prediction files and on a subset of the benchmark's 4 models x 500 images (exact at the
fused-array level, within the export's rounding at the COCO level), with equal scores, equal
boxes, bad boxes, sparse labels and a soft-NMS group of thousands of boxes; the one IoU (compiled
and numpy agree bit for bit); numba's cache where the package folder is read-only; size gating,
the CLI, the competition CSV, and bad inputs."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import os
import shlex
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import ensemble_boxes  # noqa: E402  (the reference: a missing one fails the suite, never skips it)
from ensemble_boxes.ensemble_boxes_nmw import bb_intersection_over_union  # noqa: E402

from smallbox.cli import main  # noqa: E402
from smallbox.datasets import load_coco  # noqa: E402
from smallbox.errors import SmallboxError  # noqa: E402
from smallbox.fusion.ensemble import ensemble_predictions, fuse, gate, to_detections  # noqa: E402
from smallbox.fusion.overlap import iou_rows, iou_xyxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("wbf", "nms", "soft-nms", "nmw")


@pytest.fixture(scope="module")
def members(deeppcb_predictions):
    return [json.load(gzip.open(p, "rt")) for p in deeppcb_predictions]


@pytest.fixture(scope="module")
def images(deeppcb_val):
    return load_coco(deeppcb_val, check_files=False).images


@pytest.fixture(scope="module")
def bench_subset():
    """Every tenth image of the benchmark's 4 models x 500 images (bench/bench_ensemble.py builds
    it from the bundled files): 50 images, val images and jittered copies (the bench checks all)."""
    spec = importlib.util.spec_from_file_location("bench_ensemble", ROOT / "bench" / "bench_ensemble.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    members, images = bench.make_4x500()
    few = images[::10]
    keep = {im["id"] for im in few}
    return [[p for p in m if p["image_id"] in keep] for m in members], few


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


def assert_same(ours, ref, images, members, method, **kw):
    """The COCO results equal ensemble_boxes' output up to the export's rounding (1/1000 px, 5
    decimals), same images, labels and order; before the export bit for bit (NMW's float32 boxes
    too: ensemble_boxes' float32 values, held in float64)."""
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    assert len(ours) == len(ref)
    assert [p["image_id"] for p in ours] == [r[0] for r in ref]
    assert [p["category_id"] for p in ours] == [r[1] for r in ref]
    ours_scores = np.array([p["score"] for p in ours])
    assert np.abs(ours_scores - np.array([r[3] for r in ref])).max(initial=0) <= 5e-6 + 1e-12
    x, y, bw, bh = np.array([p["bbox"] for p in ours]).reshape(-1, 4).T
    w, h = np.array([size[p["image_id"]] for p in ours]).reshape(-1, 2).T
    ref_abs = np.array([r[2] for r in ref]).reshape(-1, 4) * np.stack([w, h, w, h], axis=1)
    ours_abs = np.stack([x, y, x + bw, y + bh], axis=1)
    assert np.abs(ours_abs - ref_abs).max(initial=0) <= 1e-3 + 1e-9  # x and w each rounded to 1/1000 px
    exact = fused_arrays(members, images, method, **kw)
    assert [e[:2] for e in exact] == [r[:2] for r in ref]
    assert np.array_equal(np.array([e[3] for e in exact]), np.array([r[3] for r in ref]))
    assert np.array_equal(np.array([e[2] for e in exact]).reshape(-1, 4), np.array([r[2] for r in ref]).reshape(-1, 4))


def check(members, images, method, ours_kw=None, ref_kw=None):
    ours_kw = ours_kw or {}
    ours = ensemble_predictions(members, images, method, **ours_kw)
    assert_same(ours, reference(members, images, method, **(ours_kw if ref_kw is None else ref_kw)), images,
                members, method, **ours_kw)


CASES = [
    ("wbf", {}, {}),
    ("wbf", dict(weights=[2, 1], iou_thr=0.6, skip_box_thr=0.05, conf_type="max"),
     dict(weights=[2, 1], iou_thr=0.6, skip_box_thr=0.05, conf_type="max")),
    ("wbf", dict(weights=[1, 3], conf_type="box_and_model_avg"), dict(weights=[1, 3], conf_type="box_and_model_avg")),
    ("wbf", dict(weights=[1, 2], conf_type="absent_model_aware_avg", allows_overflow=True),
     dict(weights=[1, 2], conf_type="absent_model_aware_avg", allows_overflow=True)),
    ("wbf", dict(allows_overflow=True), dict(allows_overflow=True)),
    ("wbf", dict(weights=[0.7, 1.3], iou_thr=0.3), dict(weights=[0.7, 1.3], iou_thr=0.3)),
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
    check(members, images, method, ours_kw, ref_kw)


@pytest.mark.parametrize("method,ours_kw,ref_kw", [
    *((m, {}, {}) for m in METHODS),
    ("wbf", dict(weights=[1, 2, 3, 4], conf_type="absent_model_aware_avg"),
     dict(weights=[1, 2, 3, 4], conf_type="absent_model_aware_avg")),
    ("soft-nms", dict(soft_method="linear", iou_thr=0.3), dict(method=1, iou_thr=0.3)),
], ids=[*METHODS, "wbf-4-weights", "soft-nms-linear"])
def test_parity_on_the_benchmark_input(bench_subset, method, ours_kw, ref_kw):
    """4 models (bit masks of 4 models, larger groups), jittered boxes rounded to float32."""
    check(*bench_subset, method, ours_kw, ref_kw)


def _few(members, images, n):
    keep = {im["id"] for im in images[:n]}
    return [[p for p in m if p["image_id"] in keep] for m in members], images[:n]


@pytest.mark.parametrize("method", METHODS)
def test_parity_with_equal_scores(members, images, method):
    """Scores rounded to one decimal: many ties, inside groups of more than 15 boxes too, where
    the order ensemble_boxes' sorts give equal scores decides which box leads a cluster."""
    some, few = _few(members, images, 40)
    check([[{**p, "score": round(p["score"], 1) + 0.05} for p in m] for m in some], few, method)


@pytest.mark.parametrize("method", METHODS)
def test_parity_with_equal_scores_and_boxes(members, images, method):
    """Both models give exactly the same boxes and scores (coarse): equal IoUs and equal fused
    scores everywhere, so every tie rule (first best cluster, final score sort) is exercised."""
    some, few = _few(members, images, 40)
    coarse = [{**p, "score": round(p["score"], 1) + 0.05, "bbox": [round(v, -1) + 5 for v in p["bbox"]]}
              for p in some[0]]
    check([coarse, list(coarse)], few, method)


@pytest.mark.parametrize("method", METHODS)
def test_parity_with_bad_boxes_and_sparse_labels(members, images, method):
    """Corners swapped, boxes past the image borders (clipped), zero-area boxes (dropped), and
    category ids far apart and negative (the labels are ranked by sorting, not by range)."""
    some, few = _few(members, images, 30)
    rng = np.random.default_rng(0)
    bad = []
    for m in some:
        preds = []
        for p in m:
            x, y, w, h = p["bbox"]
            r = rng.random()
            if r < 0.05:
                x, w = x + w, -w  # x2 < x1
            elif r < 0.10:
                x, y, w, h = x - 700, y - 30, w + 700, h + 700  # past both borders
            elif r < 0.13:
                w = 0.0  # zero area
            elif r < 0.16:
                y, h = -50.0, 20.0  # entirely above the image: zero area once clipped
            preds.append({**p, "bbox": [x, y, w, h], "category_id": p["category_id"] * 10**7 - 3 * 10**7})
        bad.append(preds)
    check(bad, few, method)


def non_square(members, images, n):
    """The first ``n`` images cropped to their top 640x480, every second one then turned 90 degrees
    clockwise (480x640), the boxes with them, as tests/odd_data.py turns DeepPCB. Boxes crossing
    the crop line stay: they overhang the border and are clipped, in one direction or the other."""
    some, few = _few(members, images, n)
    turned = {im["id"] for im in few[1::2]}
    out_images = [dict(im, width=480, height=640) if im["id"] in turned else dict(im, width=640, height=480) for im in few]

    def move(p):
        x, y, w, h = p["bbox"]
        return {**p, "bbox": [480 - y - h, x, h, w]} if p["image_id"] in turned else p

    return [[move(p) for p in m if p["bbox"][1] < 480] for m in some], out_images


@pytest.mark.parametrize("method", METHODS)
def test_parity_on_non_square_images(members, images, method):
    """Each box normalised by its own image's width and height: swapped, boxes overhanging the
    640 px side are clipped at 480 and the fusion differs from ensemble_boxes'."""
    moved, odd_images = non_square(members, images, 30)
    assert sum(p["bbox"][0] + p["bbox"][2] > 480 for m in moved for p in m) > 100
    check(moved, odd_images, method)


@pytest.mark.parametrize("ours_kw,ref_kw", [({}, {}), (dict(soft_method="linear"), dict(method=1))],
                         ids=["gaussian", "linear"])
def test_soft_nms_of_a_group_of_thousands_of_boxes(members, images, ours_kw, ref_kw):
    """Every box of 30 images put in one image and one class (about 3,300 boxes, 5 million
    pairs): the walk holds no matrix of pairs, so a group of any size runs the same code."""
    some, few = _few(members, images, 30)
    one = few[0]
    piled = [[{**p, "image_id": one["id"], "category_id": 1} for p in m] for m in some]
    assert sum(map(len, piled)) > 3000
    check(piled, [one], "soft-nms", ours_kw, ref_kw)


def _tie_boxes(rng, n):
    """Boxes whose IoUs tie: corners on a grid of quarters (equal, touching, nested and zero-area
    boxes; IoUs of exactly 0, 1/2, 1/3, ...) and on a 640-pixel grid (small DeepPCB-like boxes)."""
    quarters = np.sort(rng.integers(0, 5, (n, 2, 2)), axis=1).reshape(n, 4) / 4  # [min, max] x [x, y]
    x, y = rng.integers(0, 600, (2, n))
    w, h = rng.integers(16, 40, (2, n))
    pixels = np.stack([x, y, x + w, y + h], axis=1) / 640
    return np.concatenate([quarters, pixels]).astype(np.float64)


def test_one_iou_compiled_and_numpy_agree_bit_for_bit():
    """``iou_rows`` (the kernels') and ``iou_xyxy`` (sliced inference's) on every pair of random
    and tie-constructed boxes: the same 64 bits; and ensemble_boxes' own numba IoU (NMW's) gives
    them too wherever both boxes have an area (the boxes fusion sees)."""
    rng = np.random.default_rng(1)
    random, ties = np.sort(rng.random((150, 2, 2)), axis=1).reshape(150, 4), _tie_boxes(rng, 75)
    tie_iou = iou_xyxy(ties[:, None, :], ties[None, :, :])
    assert (tie_iou == 0.5).any() and (tie_iou == 1.0).sum() > len(ties)  # the ties are there
    for boxes in (random, ties):
        numpy_iou = iou_xyxy(boxes[:, None, :], boxes[None, :, :])
        n = len(boxes)
        compiled = np.array([[iou_rows(boxes, i, boxes, j) for j in range(n)] for i in range(n)])
        assert np.array_equal(compiled.view(np.int64), numpy_iou.view(np.int64))
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        pairs = [(i, j) for i in range(n) for j in range(n) if area[i] > 0 and area[j] > 0]
        theirs = np.array([bb_intersection_over_union(boxes[i], boxes[j]) for i, j in pairs])
        assert np.array_equal(theirs, np.array([compiled[i, j] for i, j in pairs]))


CHILD = r"""
import socket
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = socket.socket.connect_ex = socket.create_connection = refuse
import numpy as np
import smallbox
from smallbox.fusion.ensemble import Detections, fuse
boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]])
dets = Detections(np.zeros(3, int), np.zeros(3, int), np.array([0.9, 0.8, 0.7]), boxes, np.array([0, 1, 0]))
print("result", smallbox.__file__, fuse(dets, 2, "soft-nms").score.tolist())
"""


def _run_read_only(read_only: list[Path], cwd: Path, env: dict) -> str:
    """``python -c CHILD`` with the ``read_only`` folders read-only: chmod for a user; root
    writes through permissions, so for root a read-only bind mount in a private mount namespace."""
    argv = [sys.executable, "-c", CHILD]
    if os.geteuid() == 0:
        if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
            pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
        mounts = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}"
                             for p in map(shlex.quote, map(str, read_only)))
        argv = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh", *argv]
    modes = {}
    for folder in read_only if os.geteuid() else []:
        for path in [folder, *folder.rglob("*")]:
            modes[path] = path.stat().st_mode
            path.chmod(modes[path] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_kernels_compile_and_cache_where_the_package_folder_is_read_only(tmp_path):
    """An install numba cannot write beside (a read-only site-packages): the kernels compile on
    the first call and cache in the user's cache folder, the next process loads them; with no
    writable folder at all they compile in every process. No network, ever."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "smallbox", site / "smallbox", ignore=shutil.ignore_patterns("__pycache__"))
    homes = [tmp_path / "home", tmp_path / "read-only-home"]
    for home in homes:
        home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    runs = []
    for home, read_only in ((homes[0], [site]), (homes[0], [site]), (homes[1], [site, homes[1]])):
        env.update(PYTHONPATH=str(site), HOME=str(home), NUMBA_DEBUG_CACHE="1")
        runs.append(_run_read_only(read_only, tmp_path, env))
    for out in runs:
        assert f"result {site / 'smallbox' / '__init__.py'} [0.9, 0.7, 0.8]" in out
    user_cache = str(homes[0] / ".cache" / "numba")
    saved = [line for line in runs[0].splitlines() if "[cache] data saved to" in line]
    assert saved and all(user_cache in line for line in saved)
    assert "[cache] data loaded from" in runs[1] and "[cache] data saved" not in runs[1]
    assert "[cache]" not in runs[2]
    assert not (site / "smallbox" / "fusion" / "__pycache__").exists()


def test_bad_options_raise(members, images):
    for kw in (dict(method="nope"), dict(conf_type="nope"), dict(weights=[1]), dict(iou_thr=2.0),
               dict(method="soft-nms", soft_method="nope")):
        with pytest.raises(SmallboxError):
            ensemble_predictions(members, images, **kw)
    with pytest.raises(SmallboxError, match="at most 63"):  # a cluster's set of models is an int64's bits
        ensemble_predictions([members[0][:10]] * 64, images, conf_type="absent_model_aware_avg")


@pytest.mark.parametrize("method", METHODS)
def test_empty_input(images, method):
    assert ensemble_predictions([[], []], images, method) == []
    only_zero_area = [[{"image_id": images[0]["id"], "category_id": 1, "bbox": [5, 5, 0, 9], "score": 0.5}], []]
    assert ensemble_predictions(only_zero_area, images, method) == []


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


@pytest.mark.parametrize("method", ["wbf", "nmw"])  # ensemble-boxes' functions with a skip_box_thr
def test_scores_exactly_at_the_skip_threshold_are_kept_as_ensemble_boxes_keeps_them(members, images, method):
    """smallbox writes scores to 5 decimals, so a file predicted at conf 0.001 holds boxes at
    exactly 0.00100: fused with skip 0.001, ensemble-boxes keeps them (it drops score < thr)."""
    some, few = _few(members, images, 30)
    at = [[{**p, "score": 0.001} if k % 3 == 0 else p for k, p in enumerate(m)] for m in some]
    assert sum(p["score"] == 0.001 for m in at for p in m) > 50
    check(at, few, method, dict(skip_box_thr=0.001), dict(skip_box_thr=0.001))


@pytest.mark.parametrize("method", METHODS)
def test_boxes_exactly_at_the_iou_threshold_fuse_as_ensemble_boxes_fuses_them(members, images, method):
    """Model B holds each of model A's boxes with its height doubled: IoU exactly 0.5, the threshold
    (coordinates on a 5 px grid of 640 px images, so that the normalised coordinates and their IoU
    are exact in floating point). Which side of the threshold "equal" falls on is ensemble-boxes'."""
    some, few = _few(members, images, 20)
    assert all(im["width"] == im["height"] == 640 for im in few)
    snapped = []
    for p in some[0]:
        x, y, w, h = (max(5, 5 * round(v / 5)) if k >= 2 else 5 * round(v / 5) for k, v in enumerate(p["bbox"]))
        if y + 2 * h <= 640 and x + w <= 640:
            snapped.append({**p, "bbox": [x, y, w, h]})
    doubled = [{**p, "bbox": [*p["bbox"][:3], 2 * p["bbox"][3]], "score": round(p["score"] * 0.9, 5)} for p in snapped]
    assert len(snapped) > 500
    check([snapped, doubled], few, method, dict(iou_thr=0.5), {"iou_thr": 0.5} if method != "soft-nms" else None)
