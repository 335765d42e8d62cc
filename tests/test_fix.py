"""`smallbox fix`: what it repairs, the change log, what it refuses; `eval` and `convert` refuse the
unrepaired file and name the repair; and why the strictness matters: pycocotools itself scores a
perfect prediction set below AP 1.0 on a ground truth with a duplicated (or zero) annotation id.

Expected outputs are written out here from the source json, never taken from smallbox."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from pathlib import Path

import pytest
from yolo_helpers import pycocotools_stats

from smallbox.cli import main

DEEPPCB = Path(__file__).resolve().parents[1] / "data" / "deeppcb"
VAL = DEEPPCB / "annotations" / "val.json"


def small_val(n_images: int = 6) -> dict:
    data = json.loads(VAL.read_text(encoding="utf-8"))
    data["images"] = data["images"][:n_images]
    ids = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    return data


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def broken(tmp_path):
    """Six DeepPCB val images (640x640) with one of each repairable problem, plus keys smallbox
    does not know (they must come back unchanged). Returns (path, original data, the problems
    as ``{name: annotation index}``)."""
    data = small_val()
    data["info"]["note"] = "kept as is"
    anns = data["annotations"]
    at = {"duplicate": 3, "zero_id": 4, "left": 5, "mask_bottom": 6, "zero_height": 7, "no_area": 8, "no_iscrowd": 9}
    anns[at["duplicate"]]["id"] = anns[1]["id"]
    anns[at["zero_id"]]["id"] = 0
    x, y, w, h = anns[at["left"]]["bbox"]
    anns[at["left"]]["bbox"], anns[at["left"]]["area"] = [-0.5, y, w, h], w * h
    x, y, w, h = anns[at["mask_bottom"]]["bbox"]
    anns[at["mask_bottom"]]["bbox"], anns[at["mask_bottom"]]["area"] = [x, 640 - h + 1, w, h], 0.7 * w * h
    anns[at["zero_height"]]["bbox"][3] = 0
    del anns[at["no_area"]]["area"]
    del anns[at["no_iscrowd"]]["iscrowd"]
    anns[10]["segmentation"] = [[1, 2, 3, 4, 5, 6]]
    anns[10]["attributes"] = {"occluded": True, "note": "ü"}
    return write(tmp_path / "broken.json", data), copy.deepcopy(data), at


def expected_fix(data: dict, at: dict) -> tuple[list[dict], set]:
    """The annotations `fix` must write, and the (kind, annotation id) pairs its log must name."""
    anns = copy.deepcopy(data["annotations"])
    new_id = max(a["id"] for a in anns) + 1
    dup, zero = anns[at["duplicate"]], anns[at["zero_id"]]
    touched = {("duplicate_annotation_id", dup["id"]), ("zero_annotation_id", 0)}
    dup["id"], zero["id"] = new_id, new_id + 1  # in file order
    left = anns[at["left"]]
    touched.add(("box_slightly_outside", left["id"]))
    left["bbox"] = [0, left["bbox"][1], left["bbox"][2] - 0.5, left["bbox"][3]]
    left["area"] = left["bbox"][2] * left["bbox"][3]  # a box area follows the box
    bottom = anns[at["mask_bottom"]]
    touched.add(("box_slightly_outside", bottom["id"]))
    bottom["bbox"] = [bottom["bbox"][0], bottom["bbox"][1], bottom["bbox"][2], bottom["bbox"][3] - 1]  # a mask's area stays
    no_area, no_crowd = anns[at["no_area"]], anns[at["no_iscrowd"]]
    no_area["area"] = no_area["bbox"][2] * no_area["bbox"][3]
    no_crowd["iscrowd"] = 0
    touched |= {("missing_area", no_area["id"]), ("missing_iscrowd", no_crowd["id"]), ("zero_size_box", anns[at["zero_height"]]["id"])}
    return [a for i, a in enumerate(anns) if i != at["zero_height"]], touched


def test_fix_repairs_and_logs_every_id(tmp_path, broken, capsys):
    path, original, at = broken
    out = tmp_path / "fixed.json"
    assert main(["fix", str(path), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    fixed = json.loads(out.read_text(encoding="utf-8"))
    annotations, touched = expected_fix(original, at)
    assert fixed["annotations"] == annotations
    assert [list(a) for a in fixed["annotations"]] == [list(a) for a in annotations]  # key order kept, new keys last
    assert {k: v for k, v in fixed.items() if k != "annotations"} == {k: v for k, v in original.items() if k != "annotations"}
    assert list(fixed) == list(original)
    log = json.loads((tmp_path / "fixed.changes.json").read_text(encoding="utf-8"))
    assert {(c["kind"], c["annotation"]) for c in log["changes"]} == touched
    assert len(log["changes"]) == len(touched)
    dropped = next(c for c in log["changes"] if c["kind"] == "zero_size_box")
    assert dropped["before"] == original["annotations"][at["zero_height"]] and dropped["after"] is None
    renumbered = next(c for c in log["changes"] if c["kind"] == "duplicate_annotation_id")
    assert renumbered["image_id"] == original["annotations"][at["duplicate"]]["image_id"]
    assert renumbered["after"] == {"id": annotations[at["duplicate"]]["id"]}


def test_fix_is_idempotent(tmp_path, broken):
    path, _, _ = broken
    assert main(["fix", str(path), "--out", str(tmp_path / "once.json")]) == 0
    assert main(["fix", str(tmp_path / "once.json"), "--out", str(tmp_path / "twice.json")]) == 0
    assert json.loads((tmp_path / "twice.changes.json").read_text())["changes"] == []
    assert json.loads((tmp_path / "twice.json").read_text()) == json.loads((tmp_path / "once.json").read_text())


def test_fix_refuses_what_needs_a_person_and_writes_nothing(tmp_path, capsys):
    data = small_val()
    a = data["annotations"][2]
    a["bbox"][0] = 640 - a["bbox"][2] + 3  # 3 px outside: more than the 1 px tolerance
    unknown = data["annotations"][4]
    unknown["category_id"] = 77
    path = write(tmp_path / "ann.json", data)
    assert main(["fix", str(path), "--out", str(tmp_path / "fixed.json")]) == 2
    err = capsys.readouterr().err
    assert f"annotation {a['id']} (image {a['image_id']})" in err and "by 3 px" in err
    assert f"annotation {unknown['id']} (image {unknown['image_id']}) has unknown category 77" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.json"]
    unknown["category_id"] = 1
    write(path, data)
    assert main(["fix", str(path), "--out", str(tmp_path / "fixed.json"), "--tolerance", "3"]) == 0
    fixed = {x["id"]: x for x in json.loads((tmp_path / "fixed.json").read_text())["annotations"]}
    assert fixed[a["id"]]["bbox"][0] + fixed[a["id"]]["bbox"][2] == 640
    assert main(["fix", str(path), "--out", str(path)]) == 2  # never over the original
    assert "would replace the original" in capsys.readouterr().err


def test_eval_and_convert_refuse_the_unrepaired_file_and_name_the_repair(tmp_path, broken, capsys):
    path, original, at = broken
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
                                 for a in expected_fix(original, at)[0]]))
    assert main(["eval", str(path), str(preds)]) == 2
    err = capsys.readouterr().err
    anns = original["annotations"]
    for name in ("duplicate", "left", "mask_bottom", "zero_height"):
        assert f"annotation {anns[at[name]]['id']} (image {anns[at[name]]['image_id']})" in err, name
    assert f"run: smallbox fix {path} --out broken.fixed.json" in err and "Traceback" not in err
    images = tmp_path / "images"
    images.mkdir()
    for im in original["images"]:
        shutil.copy(DEEPPCB / "images" / im["file_name"], images / im["file_name"])
    assert main(["convert", str(path), "--images", str(images), "--out", str(tmp_path / "yolo")]) == 2
    err = capsys.readouterr().err
    assert f"run: smallbox fix {path} --out broken.fixed.json --images {images}" in err
    assert not (tmp_path / "yolo").exists()

    assert main(["fix", str(path), "--out", str(tmp_path / "broken.fixed.json")]) == 0
    fixed = tmp_path / "broken.fixed.json"
    assert main(["eval", str(fixed), str(preds), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(1.0)
    assert main(["convert", str(fixed), "--images", str(images), "--out", str(tmp_path / "yolo")]) == 0


@pytest.mark.parametrize("quirk", ["duplicate id", "id 0"])
def test_pycocotools_misscores_what_smallbox_refuses_and_fix_repairs(tmp_path, quirk, capsys):
    """A perfect prediction set — every ground-truth box, score 1 — must score AP 1.0."""
    from pycocotools.coco import COCO

    data = small_val(20)
    anns = data["annotations"]
    if quirk == "duplicate id":  # two annotations on different images share an id (as in TACO)
        other = next(a for a in anns if a["image_id"] != anns[0]["image_id"])
        other["id"] = anns[0]["id"]
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = copy.deepcopy(data)
            coco.createIndex()
        assert len(coco.loadAnns([anns[0]["id"], other["id"]])) == 2
        assert coco.loadAnns([anns[0]["id"]])[0] == coco.loadAnns([other["id"]])[0]  # one annotation stands for both
    else:  # pycocotools marks "unmatched" with 0: the match to annotation 0 is lost
        anns[0]["id"] = 0
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in anns]
    assert pycocotools_stats(data, perfect)[0] < 0.999

    gt, preds = write(tmp_path / "gt.json", data), tmp_path / "preds.json"
    preds.write_text(json.dumps(perfect))
    assert main(["eval", str(gt), str(preds)]) == 2
    assert "smallbox fix" in capsys.readouterr().err
    assert main(["fix", str(gt), "--out", str(tmp_path / "fixed.json")]) == 0
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    assert pycocotools_stats(fixed, perfect)[0] == pytest.approx(1.0)
    assert main(["eval", str(tmp_path / "fixed.json"), str(preds), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(1.0)


def test_a_box_just_beyond_the_tolerance_gets_a_tolerance_that_clips_it(tmp_path, capsys, monkeypatch):
    """A box 1.32 px outside (621.32 + 20 in floats: 1.3200000000000500): the refusal suggests
    `--tolerance 1.32`, and that command, run as printed, clips it. Its output goes into the
    current folder, not beside the (often read-only) data; eda suggests the same."""
    import shlex

    data = small_val()
    a = data["annotations"][2]
    a["bbox"] = [621.32, a["bbox"][1], 20.0, a["bbox"][3]]
    source = tmp_path / "data"
    source.mkdir()
    path = write(source / "ann.json", data)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["fix", str(path), "--out", "first.json"]) == 2
    err = capsys.readouterr().err
    suggested = err.strip().splitlines()[-1].split("clip them with: ")[1]
    assert suggested == f"smallbox fix {path} --out ann.fixed.json --tolerance 1.32"
    assert main(shlex.split(suggested)[1:]) == 0
    fixed = {x["id"]: x for x in json.loads((work / "ann.fixed.json").read_text())["annotations"]}
    assert fixed[a["id"]]["bbox"][0] + fixed[a["id"]]["bbox"][2] == pytest.approx(640)
    assert sorted(p.name for p in source.iterdir()) == ["ann.json"]  # nothing written beside the data
    assert main(["eda", str(path), "--out", str(work / "eda")]) == 0
    summary = json.loads((work / "eda" / "summary.json").read_text())
    assert summary["repair_wider"] == suggested
