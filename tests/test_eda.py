"""`smallbox eda` on the bundled real data, checked against counts computed here from the raw
json in plain Python (not with smallbox code) and against numpy's quantiles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smallbox.cli import main
from smallbox.datasets import SizeBuckets, load_coco
from smallbox.datasets.eda import box_table

DATA = Path(__file__).resolve().parents[1] / "data"
DEEPPCB, BCCD = DATA / "deeppcb", DATA / "bccd"

BUCKETS = ("small", "medium", "large")
PLOTS = ("area_hist.png", "area_hist_clipped.png", "area_hist_log.png", "area_by_class.png", "bucket_counts.png",
         "bucket_counts_by_class.png", "wh_scatter.png", "aspect_ratio.png", "boxes_per_image.png")


def raw_boxes(path):
    """``[(image_id, category_id, area)]`` of the non-crowd boxes, straight from the json."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    boxes = [(a["image_id"], a["category_id"], a["bbox"][2] * a["bbox"][3]) for a in data["annotations"] if not a.get("iscrowd", 0)]
    return data, boxes


def bucket_of(area, t_small, t_medium):
    return "small" if area < t_small else "medium" if area < t_medium else "large"


def expected_counts(data, boxes, thresholds):
    """Boxes and images per bucket, overall and per class name, by plain counting."""
    overall = {b: 0 for b in BUCKETS}
    images = {b: set() for b in BUCKETS}
    names = {c["id"]: c["name"] for c in data["categories"]}
    per_class = {n: ({b: 0 for b in BUCKETS}, {b: set() for b in BUCKETS}) for n in names.values()}
    for image_id, category_id, area in boxes:
        b = bucket_of(area, *thresholds)
        overall[b] += 1
        images[b].add(image_id)
        per_class[names[category_id]][0][b] += 1
        per_class[names[category_id]][1][b].add(image_id)
    return (overall, {b: len(s) for b, s in images.items()},
            {n: (c, {b: len(s) for b, s in im.items()}) for n, (c, im) in per_class.items()})


def tertile_thresholds(areas):
    """The fitted thresholds the docs promise: area tertiles, rounded to a whole side, squared."""
    sides = np.sqrt(np.quantile(np.asarray(areas, dtype=np.float64), [1 / 3, 2 / 3]))
    return [float(max(1, round(s)) ** 2) for s in sides]


@pytest.fixture(scope="module")
def deeppcb_eda(tmp_path_factory):
    out = tmp_path_factory.mktemp("eda") / "deeppcb"
    rc = main(["eda", str(DEEPPCB / "annotations" / "val.json"), "--out", str(out), "--images", str(DEEPPCB / "images")])
    assert rc == 0
    return out, json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def bccd_eda(tmp_path_factory):
    out = tmp_path_factory.mktemp("eda") / "bccd"
    out.mkdir()  # an existing empty folder is fine
    rc = main(["eda", str(BCCD / "annotations" / "val.json"), "--out", str(out), "--buckets", "40^2,120^2"])
    assert rc == 0
    return out, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def check_bucket_set(summary_set, data, boxes, thresholds):
    overall, images, per_class = expected_counts(data, boxes, thresholds)
    assert summary_set["thresholds"] == pytest.approx(thresholds)
    assert summary_set["boxes"] == overall
    assert summary_set["images"] == images
    assert {c["name"]: (c["boxes"], c["images"]) for c in summary_set["per_class"]} == per_class
    assert sum(overall.values()) == len(boxes)


def test_deeppcb_counts_match_plain_counting(deeppcb_eda):
    _, summary = deeppcb_eda
    data, boxes = raw_boxes(DEEPPCB / "annotations" / "val.json")
    assert summary["boxes"] == len(boxes) == 1361
    assert summary["images"] == len(data["images"])
    check_bucket_set(summary["buckets"]["coco"], data, boxes, (32**2, 96**2))
    check_bucket_set(summary["buckets"]["fit"], data, boxes, tertile_thresholds([a for *_, a in boxes]))
    # DeepPCB is the report's lesson: COCO's large bucket is nearly empty, the advice says so.
    assert summary["buckets"]["coco"]["boxes"]["large"] <= 5
    assert "large" in summary["advice"][0] and "--areas fit" in summary["advice"][0]


def test_bccd_custom_buckets_and_per_class(bccd_eda):
    _, summary = bccd_eda
    data, boxes = raw_boxes(BCCD / "annotations" / "val.json")
    assert set(summary["buckets"]) == {"coco", "fit", "custom"} and summary["chosen"] == "custom"
    check_bucket_set(summary["buckets"]["custom"], data, boxes, (40**2, 120**2))
    check_bucket_set(summary["buckets"]["coco"], data, boxes, (32**2, 96**2))
    by_name = {c["name"]: c for c in summary["categories"]}
    platelets = [a for _, cid, a in boxes if cid == next(c["id"] for c in data["categories"] if c["name"] == "Platelets")]
    assert by_name["Platelets"]["boxes"] == len(platelets)
    assert by_name["Platelets"]["area"]["p50"] == pytest.approx(float(np.median(platelets)))


@pytest.mark.parametrize("which", ["deeppcb", "bccd"])
def test_fitted_thresholds_are_area_tertiles(which, deeppcb_eda, bccd_eda):
    _, summary = deeppcb_eda if which == "deeppcb" else bccd_eda
    root = DEEPPCB if which == "deeppcb" else BCCD
    _, boxes = raw_boxes(root / "annotations" / "val.json")
    areas = [a for *_, a in boxes]
    expected = tertile_thresholds(areas)
    assert summary["suggested_thresholds"] == {"name": "fit", "thresholds": expected}
    assert list(SizeBuckets.fit(areas).thresholds) == expected


def test_box_sides_after_the_letterbox_of_non_square_images(tmp_path, odd_deeppcb):
    """640x480 and 480x640 images at --imgsz 320: Ultralytics' letterbox scales the LONG side to
    320, so every box side is halved (a scale from the short side would be 2/3)."""
    out = tmp_path / "eda"
    assert main(["eda", str(odd_deeppcb["train"]), "--out", str(out), "--imgsz", "320"]) == 0
    resized = json.loads((out / "summary.json").read_text(encoding="utf-8"))["resized"]
    data, boxes = raw_boxes(odd_deeppcb["train"])
    assert {max(im["width"], im["height"]) for im in data["images"]} == {640}
    assert {min(im["width"], im["height"]) for im in data["images"]} == {480}
    sides = np.sqrt([a for *_, a in boxes]) * 320 / 640
    assert resized["imgsz"] == 320
    assert resized["side"]["p50"] == pytest.approx(float(np.median(sides)))
    assert (resized["side"]["min"], resized["side"]["max"]) == pytest.approx((sides.min(), sides.max()))
    assert resized["fraction_side_below_8"] == pytest.approx(float((sides < 8).mean()))
    assert resized["fraction_side_below_16"] == pytest.approx(float((sides < 16).mean()))
    assert 0 < resized["fraction_side_below_16"] < 1  # the threshold cuts through these boxes


def test_boxes_per_image_and_area_stats(deeppcb_eda):
    _, summary = deeppcb_eda
    data, boxes = raw_boxes(DEEPPCB / "annotations" / "val.json")
    per_image = {im["id"]: 0 for im in data["images"]}
    for image_id, *_ in boxes:
        per_image[image_id] += 1
    assert summary["boxes_per_image"]["max"] == max(per_image.values())
    assert summary["boxes_per_image"]["p50"] == pytest.approx(float(np.median(list(per_image.values()))))
    areas = sorted(a for *_, a in boxes)
    assert (summary["area"]["min"], summary["area"]["max"]) == (areas[0], areas[-1])


def test_pngs_exist_and_are_not_blank(deeppcb_eda, bccd_eda):
    for out, summary in (deeppcb_eda, bccd_eda):
        expected = PLOTS + (("sample_crops.png",) if out.name == "deeppcb" else ())
        assert summary["plots"] == list(expected)
        for name in expected:
            pixels = np.asarray(Image.open(out / name).convert("L"), dtype=np.float64)
            assert pixels.shape[0] > 300 and pixels.shape[1] > 300, name
            assert pixels.var() > 100, f"{name} looks blank"
            # A real plot has plenty of non-background pixels, not just a frame.
            assert (pixels < 200).mean() > 0.01, f"{name} has almost nothing drawn"


def test_summary_md_has_the_bucket_table(deeppcb_eda):
    out, summary = deeppcb_eda
    md = (out / "summary.md").read_text(encoding="utf-8")
    data, boxes = raw_boxes(DEEPPCB / "annotations" / "val.json")
    overall, images, _ = expected_counts(data, boxes, (1024, 9216))
    row = "| coco (32², 96²) | " + " | ".join(f"{overall[b]} ({100 * overall[b] / len(boxes):.0f}%)" for b in BUCKETS)
    assert row in md
    assert " / ".join(str(images[b]) for b in BUCKETS) in md
    assert all(f"![{p}]({p})" in md for p in PLOTS)


def test_problems_are_reported_and_the_rest_analysed(tmp_path, capsys):
    with open(DEEPPCB / "annotations" / "val.json", encoding="utf-8") as f:
        data = json.load(f)
    stray = data["annotations"][3]
    stray["image_id"] = 987654
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "eda"
    assert main(["eda", str(bad), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "annotation points at an unknown image" in printed and "set aside 1 box(es)" in printed
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["problems"] == [{"kind": "unknown_image", "title": "annotation points at an unknown image", "count": 1,
                                    "first_ids": [stray["id"]], "repair": None}]
    assert summary["set_aside"]["annotations"] == {"annotation points at an unknown image": 1}
    _, boxes = raw_boxes(DEEPPCB / "annotations" / "val.json")
    assert summary["boxes"] == len(boxes) - 1 and "repair" not in summary  # nothing fix could repair
    assert "## Problems" in (out / "summary.md").read_text(encoding="utf-8")


def test_unreadable_json_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text((DEEPPCB / "annotations" / "val.json").read_text(encoding="utf-8")[:3000], encoding="utf-8")
    assert main(["eda", str(bad), "--out", str(tmp_path / "eda")]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not valid json" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_refuses_to_replace_a_foreign_folder_and_replaces_its_own(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    ann = str(BCCD / "annotations" / "val.json")
    assert main(["eda", ann, "--out", str(foreign)]) == 2
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    earlier = tmp_path / "eda"  # an earlier EDA output (has summary.json) is replaced whole
    earlier.mkdir()
    (earlier / "summary.json").write_text("{}")
    (earlier / "stale.png").write_bytes(b"")
    assert main(["eda", ann, "--out", str(earlier), "--buckets", "fit"]) == 0
    assert json.loads((earlier / "summary.json").read_text())["chosen"] == "fit"
    assert not (earlier / "stale.png").exists() and (earlier / "wh_scatter.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eda", "mine"]


def test_progress_bar_on_request(capsys):
    table = box_table(load_coco(BCCD / "annotations" / "val.json"), progress=True)
    assert len(table) == 209
    assert "reading boxes" in capsys.readouterr().err
    assert math.isclose(float(table.area.sum()), sum(a for *_, a in raw_boxes(BCCD / "annotations" / "val.json")[1]))


def test_failure_while_plotting_leaves_nothing(tmp_path, monkeypatch):
    from smallbox.datasets import eda_plots
    from smallbox.datasets.eda import run_eda

    def half_then_fail(table, sets, chosen, out, **kw):
        (out / "area_hist.png").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(eda_plots, "write_plots", half_then_fail)
    with pytest.raises(RuntimeError):
        run_eda(load_coco(BCCD / "annotations" / "val.json"), tmp_path / "eda")
    assert list(tmp_path.iterdir()) == []
