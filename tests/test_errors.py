"""``smallbox errors``: TIDE's error decomposition, overall equal to ``tidecv`` on the bundled
predictions of two real models and on a hand-made image holding one error of each type (counted
by hand), per size range (a range covering every box equals the overall profile; each hand-made
error lands in its box's range), the confusion matrix counted by hand, and the CLI's files."""

from __future__ import annotations

import copy
import gzip
import json

import numpy as np
import pytest
from PIL import Image
from yolo_helpers import DEEPPCB

from smallbox.analysis.errors import confusion_matrix, error_profile, error_profiles
from smallbox.cli import main
from smallbox.datasets import SizeBuckets, load_coco

PREDS = sorted((DEEPPCB / "predictions").glob("*.json.gz"))
KINDS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")


def tidecv_profile(gt: dict, preds: list, tmp_path) -> dict:
    """tidecv's numbers: it needs a segmentation per ground-truth box (a polygon of the box here)."""
    from tidecv import TIDE, datasets

    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(preds))
    tide = TIDE()
    run = tide.evaluate(datasets.COCO(str(tmp_path / "gt.json")), datasets.COCOResult(str(tmp_path / "dt.json")),
                        mode=TIDE.BOX)
    (main_errors,), (special,) = tide.get_main_errors().values(), tide.get_special_errors().values()
    return {"AP50": run.ap, **main_errors, **special}


@pytest.mark.parametrize("path", PREDS, ids=lambda p: p.name)
def test_overall_equals_tidecv_on_real_predictions(path, tmp_path):
    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    with gzip.open(path, "rt") as f:
        preds = json.load(f)
    ours = error_profile(gt, preds)
    theirs = tidecv_profile(gt.data, preds, tmp_path)
    for key in ("AP50", *KINDS, "FalsePos", "FalseNeg"):
        assert ours[key] == pytest.approx(theirs[key], abs=0.01), key


def hand_made():
    """One 640 px image: boxes A, B (class 1, medium), C (class 2, medium), D (class 1, small).
    Detections, best score first: a hit on A, a duplicate on A, B poorly placed (IoU 0.3), class 1
    on C, a box on nothing; nothing near D."""
    anns = [(1, [100, 100, 60, 60], 1), (2, [300, 100, 60, 60], 1), (3, [100, 300, 60, 60], 2), (4, [500, 500, 20, 20], 1)]
    gt = {"images": [{"id": 7, "file_name": "x.png", "width": 640, "height": 640}],
          "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
          "annotations": [{"id": i, "image_id": 7, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                          for i, b, c in anns]}
    preds = [{"image_id": 7, "category_id": c, "bbox": b, "score": s} for c, b, s in (
        (1, [101, 101, 60, 60], 0.9), (1, [104, 104, 60, 60], 0.8), (1, [330, 120, 60, 60], 0.7),
        (1, [100, 302, 60, 60], 0.6), (1, [400, 400, 40, 40], 0.5))]
    return gt, preds


def test_one_error_of_each_type_by_hand_and_as_tidecv(tmp_path):
    gt, preds = hand_made()
    ours = error_profile(gt, preds)
    assert ours["counts"] == {"Cls": 1, "Loc": 1, "Both": 0, "Dupe": 1, "Bkg": 1, "Miss": 1}
    theirs = tidecv_profile(gt, preds, tmp_path)
    for key in ("AP50", *KINDS, "FalsePos", "FalseNeg"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), key
    # by hand: class 1 AP50 34/101 (one hit, recall 1/3), class 2 0; fixing the class error makes
    # class 2 perfect: mean (34/101 + 1) / 2
    assert ours["AP50"] == pytest.approx(100 * (34 / 101) / 2)
    assert ours["Cls"] == pytest.approx(100 * (34 / 101 + 1) / 2 - ours["AP50"])


def test_each_error_lands_in_its_boxs_size_range():
    gt, preds = hand_made()
    p = error_profiles(gt, preds, SizeBuckets.coco())
    assert p["by_size"]["small"]["counts"]["Miss"] == 1 and p["by_size"]["small"]["gt_boxes"] == 1
    medium = p["by_size"]["medium"]["counts"]
    assert (medium["Miss"], medium["Cls"], medium["Loc"], medium["Dupe"]) == (0, 1, 1, 1)
    assert p["by_size"]["large"]["gt_boxes"] == 0


def test_a_range_holding_every_box_is_the_overall_profile():
    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    with gzip.open(PREDS[0], "rt") as f:
        preds = json.load(f)
    everything = error_profile(gt, preds, (0, 1e10))
    overall = error_profile(gt, preds)
    for key in ("AP50", *KINDS, "FalsePos", "FalseNeg"):
        assert everything[key] == pytest.approx(overall[key], abs=1e-12), key


def test_confusion_matrix_by_hand():
    gt, preds = hand_made()
    m = confusion_matrix(gt, preds, conf=0.25, iou=0.45)
    assert m["classes"] == ["one", "two", "background"]
    # A: matched (one->one); C: found as one (two->one); B (IoU 0.3) and D: missed (-> background);
    # the duplicate on A, the misplaced B box and the box on nothing: background -> one
    assert m["matrix"] == [[1, 0, 2], [1, 0, 0], [3, 0, 0]]
    small = confusion_matrix(gt, preds, (0, 32 ** 2), conf=0.25, iou=0.45)
    assert small["matrix"] == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]  # only D, missed


def test_cli_writes_the_profile_the_change_and_the_plots(tmp_path, capsys):
    gt = DEEPPCB / "annotations" / "val.json"
    assert main(["errors", str(gt), str(PREDS[0]), str(PREDS[1]), "--out", str(tmp_path / "e"), "--json",
                 str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "B - A" in out and "small" in out
    data = json.loads((tmp_path / "e.json").read_text())
    a, b = (data["runs"][str(p)] for p in PREDS)
    assert set(a["overall"]) >= {*KINDS, "FalsePos", "FalseNeg"} and set(a["by_size"]) == {"small", "medium", "large"}
    assert a["confusion"]["overall"]["classes"][-1] == "background"
    for png in ["errors.png"] + [f"confusion_{p.name.split('.')[0]}.png" for p in PREDS]:
        img = np.asarray(Image.open(tmp_path / "e" / png).convert("L"))
        assert img.shape[0] > 300 and img.std() > 10, png
    assert main(["errors", str(gt), str(PREDS[0]), "--areas", "aitod", "--json", str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    assert set(one["by_size"]) == {"verytiny", "tiny", "small", "medium"} and one["max_dets"] == 1500


def test_a_range_without_boxes_reads_dash_and_b_minus_a_keeps_the_box_counts(capsys):
    """DeepPCB has no box under 16²: AI-TOD's verytiny and tiny ranges are empty and say "-", not a
    profile of zeros; the B - A table keeps each range's box count (not 0 = n - n)."""
    gt = DEEPPCB / "annotations" / "val.json"
    areas = [a["area"] for a in json.loads(gt.read_text())["annotations"]]
    # closed ranges, as COCO's evaluator counts them (a box of exactly 32² is in small and medium)
    counts = {"verytiny": sum(a <= 8 ** 2 for a in areas), "tiny": sum(8 ** 2 <= a <= 16 ** 2 for a in areas),
              "small": sum(16 ** 2 <= a <= 32 ** 2 for a in areas)}
    assert counts["verytiny"] == counts["tiny"] == 0 < counts["small"]
    assert main(["errors", str(gt), str(PREDS[0]), str(PREDS[1]), "--areas", "aitod"]) == 0
    out = capsys.readouterr().out
    tables = out.split("B - A")
    for name in ("verytiny", "tiny"):
        row = next(line for line in tables[0].splitlines() if line.startswith(name)).split()
        assert row[1:] == ["0"] + ["-"] * 9
    small = next(line for line in tables[1].splitlines() if line.startswith("small")).split()
    assert int(small[1]) == counts["small"] and small[2].startswith(("+", "-"))


def test_confusion_matrix_is_ultralytics_with_scores_at_the_threshold():
    """Against Ultralytics' own ConfusionMatrix.process_batch, image by image, on real detections
    of which a third score exactly 0.25 (the default conf after smallbox's 5-decimal rounding):
    Ultralytics keeps scores above conf only, and so must the matrix smallbox draws."""
    import torch
    from ultralytics.utils.metrics import ConfusionMatrix

    gt = json.loads((DEEPPCB / "annotations" / "val.json").read_text())
    gt["images"] = gt["images"][:25]
    keep = {im["id"] for im in gt["images"]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    with gzip.open(PREDS[0], "rt") as f:
        preds = [p for p in json.load(f) if p["image_id"] in keep and p["score"] > 0.1]
    preds = [{**p, "score": 0.25} if k % 3 == 0 else p for k, p in enumerate(preds)]
    cats = sorted(c["id"] for c in gt["categories"])
    theirs = ConfusionMatrix(names={k: str(c) for k, c in enumerate(cats)})

    def xyxy(rows):
        b = torch.tensor([r["bbox"] for r in rows], dtype=torch.float64).reshape(-1, 4)
        return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)

    for im in gt["images"]:
        boxes = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
        dets = [p for p in preds if p["image_id"] == im["id"]]
        theirs.process_batch({"cls": torch.tensor([cats.index(p["category_id"]) for p in dets]),
                              "conf": torch.tensor([p["score"] for p in dets], dtype=torch.float64), "bboxes": xyxy(dets)},
                             {"cls": torch.tensor([cats.index(a["category_id"]) for a in boxes]), "bboxes": xyxy(boxes)},
                             conf=0.25, iou_thres=0.45)
    ours = confusion_matrix(gt, preds, conf=0.25, iou=0.45)
    assert sum(p["score"] == 0.25 for p in preds) > 50
    assert np.array_equal(np.array(ours["matrix"]), theirs.matrix.T.astype(int))  # Ultralytics: rows predicted
