"""Bad input to the newer commands (issue 25), tried as a careless user would: each case ends with
a one-line message naming the file and exit 2 (or works, where the input is valid), without a
traceback, with nothing overwritten or half-written, and ids identical across commands."""

from __future__ import annotations

import copy
import gzip
import json
import re
import shutil

import pytest
from yolo_helpers import DEEPPCB, ROOT

from smallbox.cli import main

GT = DEEPPCB / "annotations" / "val.json"
PREDS = sorted((DEEPPCB / "predictions").glob("*.json.gz"))
MODEL = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"


def cli(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    # Ultralytics' logger keeps a stream pytest's capture of an earlier test has closed: Python
    # then prints a "Logging error" block of its own, not one of the command's
    own = re.sub(r"--- Logging error ---.*?Arguments: [^\n]*\n", "", err, flags=re.S)
    assert "Traceback" not in own
    return rc, out, own


def preds_of(path):
    with gzip.open(path, "rt") as f:
        return json.load(f)


@pytest.fixture
def broken_folder(tmp_path):
    """Five bundled images and three broken ones between them: a truncated PNG, an empty JPEG and a
    text file named .png."""
    folder = tmp_path / "images"
    folder.mkdir()
    names = [im["file_name"] for im in json.loads(GT.read_text())["images"][:5]]
    for name in names:
        shutil.copy(DEEPPCB / "images" / name, folder / name)
    (folder / f"{names[1][:-4]}b.png").write_bytes((DEEPPCB / "images" / names[1]).read_bytes()[:3000])
    (folder / f"{names[2][:-4]}c.jpg").write_bytes(b"")
    (folder / f"{names[3][:-4]}d.png").write_text("not an image\n")
    return folder


def test_predict_refuses_unreadable_images_naming_each(broken_folder, tmp_path, capsys):
    rc, _, err = cli(["yolo", "predict", f"model={MODEL}", f"source={broken_folder}", "imgsz=320", "device=cpu",
                      f"project={tmp_path / 'runs'}", "name=p"], capsys)
    assert rc == 2 and "cannot be read" in err and "--skip-unreadable" in err
    assert "c.jpg" in err and "d.png" in err  # named (the truncated one shows once decoding fails)
    assert not (tmp_path / "runs" / "p" / "predictions.json").exists()


def test_skip_unreadable_keeps_every_other_images_id(broken_folder, tmp_path, capsys):
    rc, _, _ = cli(["yolo", "predict", f"model={MODEL}", f"source={broken_folder}", "imgsz=320", "device=cpu",
                    f"project={tmp_path / 'runs'}", "name=p", "--skip-unreadable"], capsys)
    assert rc == 0
    listing = sorted(p.name for p in broken_folder.iterdir())
    images = json.loads((tmp_path / "runs" / "p" / "images.json").read_text())["images"]
    readable = [n for n in listing if not n.endswith(("b.png", "c.jpg", "d.png"))]
    # ids are positions in the whole folder (1..8), as slice and ensemble number it: not 1..5
    assert [(im["id"], im["file_name"]) for im in images] == [(listing.index(n) + 1, n) for n in readable]
    preds = json.loads((tmp_path / "runs" / "p" / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} <= {im["id"] for im in images}


def test_a_folder_of_only_broken_images_leaves_no_run_folder(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_text("x")
    (folder / "b.jpg").write_bytes(b"")
    rc, _, err = cli(["yolo", "predict", f"model={MODEL}", f"source={folder}", "device=cpu",
                      f"project={tmp_path / 'runs'}", "name=p", "--skip-unreadable"], capsys)
    assert rc == 2 and "none of its 2 image(s) can be read" in err and not (tmp_path / "runs" / "p").exists()


@pytest.mark.parametrize("command", ["ensemble", "slice", "compare", "report"])
def test_no_output_onto_an_input(command, tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(preds_of(PREDS[0])))
    before = a.read_bytes()
    argv = {"ensemble": ["ensemble", a, PREDS[1], "--gt", GT, "--out", a],
            "slice": ["slice", MODEL, "--images", DEEPPCB / "images", "--gt", a, "--out", a],
            "compare": ["compare", GT, a, PREDS[1], "--images", DEEPPCB / "images", "--out", tmp_path],
            "report": ["report", "--ledger", tmp_path, "--out", a]}[command]
    if command == "compare":
        shutil.copy(a, tmp_path / "summary.json")
        argv[2] = tmp_path / "summary.json"
    rc, _, err = cli(argv, capsys)
    assert rc == 2 and "would be overwritten" in err, err
    assert a.read_bytes() == before


def test_convert_refuses_a_file_named_by_two_ids_and_fix_names_it(tmp_path, capsys):
    data = json.loads(GT.read_text())
    data["images"].append({**data["images"][0], "id": 99_999})
    data["annotations"].append({**data["annotations"][0], "id": 888_888, "image_id": 99_999})
    bad = tmp_path / "twice.json"
    bad.write_text(json.dumps(data))
    name = data["images"][0]["file_name"]
    rc, _, err = cli(["convert", bad, "--images", DEEPPCB / "images", "--out", tmp_path / "ds"], capsys)
    assert rc == 2 and f"{name!r}: ids {data['images'][0]['id']}, 99999" in err and not (tmp_path / "ds").exists()
    rc, _, err = cli(["fix", bad, "--out", tmp_path / "fixed.json"], capsys)
    assert rc == 2 and "image 99999 names" in err and not (tmp_path / "fixed.json").exists()
    rc, _, err = cli(["eval", bad, PREDS[0]], capsys)
    assert rc == 0 and "named by two or more image ids" in err  # valid to score: said, not refused


def test_repeated_ground_truth_boxes_are_refused_and_fix_drops_them(tmp_path, capsys):
    data = json.loads(GT.read_text())
    data["annotations"].append({**data["annotations"][3], "id": 777_777})
    bad = tmp_path / "repeat.json"
    bad.write_text(json.dumps(data))
    rc, _, err = cli(["eval", bad, PREDS[0]], capsys)
    assert rc == 2 and "annotation 777777" in err and "repeats annotation" in err and "smallbox fix" in err
    rc, out, _ = cli(["fix", bad, "--out", tmp_path / "fixed.json"], capsys)
    assert rc == 0 and "1  dropped" in out
    log = json.loads((tmp_path / "fixed.changes.json").read_text())
    assert log["changes"][0]["kind"] == "duplicate_box" and len(json.loads((tmp_path / "fixed.json").read_text())["annotations"]) \
        == len(data["annotations"]) - 1


def test_repeated_prediction_rows_are_named_by_eval_significance_and_ensemble(tmp_path, capsys):
    preds = preds_of(PREDS[0])
    doubled = tmp_path / "doubled.json"
    doubled.write_text(json.dumps(preds + copy.deepcopy(preds)))
    rc, _, err = cli(["eval", GT, doubled], capsys)
    assert rc == 0 and f"{len(preds):,} prediction row(s) repeat an earlier row exactly" in err
    rc, _, err = cli(["significance", GT, doubled, "--", PREDS[1], "--n", "20"], capsys)
    assert rc == 0 and "repeat an earlier row exactly" in err
    rc, _, err = cli(["ensemble", doubled, PREDS[1], "--gt", GT, "--out", tmp_path / "f.json"], capsys)
    assert rc == 0 and "repeat an earlier row exactly" in err


def test_ensemble_refuses_scores_outside_0_1(tmp_path, capsys):
    preds = preds_of(PREDS[0])
    for p in preds[:3]:
        p["score"] = 4.21
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(preds))
    rc, _, err = cli(["ensemble", odd, PREDS[1], "--gt", GT, "--out", tmp_path / "f.json"], capsys)
    assert rc == 2 and "3 score(s) outside [0, 1]" in err and not (tmp_path / "f.json").exists()


def test_plan_refuses_a_power_of_one(capsys):
    rc, _, err = cli(["significance", GT, PREDS[0], PREDS[1], "--", PREDS[1], "--plan", "--delta", "0.02", "--power", "1"],
                     capsys)
    assert rc == 2 and "must be below 1" in err


def test_two_slice_outputs_in_one_folder_keep_their_own_ids(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = [im["file_name"] for im in json.loads(GT.read_text())["images"][:3]]
    for n in names:
        shutil.copy(DEEPPCB / "images" / n, folder / n)
    rc1, _, _ = cli(["slice", MODEL, "--images", folder, "--out", tmp_path / "out" / "a.json", "--device", "cpu"], capsys)
    (folder / names[0]).unlink()  # the second run sees another folder
    rc2, _, _ = cli(["slice", MODEL, "--images", folder, "--out", tmp_path / "out" / "b.json", "--device", "cpu"], capsys)
    assert rc1 == rc2 == 0
    a = json.loads((tmp_path / "out" / "a.images.json").read_text())["images"]
    b = json.loads((tmp_path / "out" / "b.images.json").read_text())["images"]
    assert [im["file_name"] for im in a] == names and [im["file_name"] for im in b] == names[1:]


def test_convert_into_a_dataset_of_other_inputs_needs_overwrite(tmp_path, capsys):
    args = ["convert", DEEPPCB / "annotations" / "train.json", "--images", DEEPPCB / "images", "--out", tmp_path / "ds"]
    assert cli([*args, "--val", GT], capsys)[0] == 0
    assert cli([*args, "--val", GT], capsys)[0] == 0  # a rerun of the same conversion
    rc, _, err = cli([*args, "--val", DEEPPCB / "annotations" / "select-101.json"], capsys)
    assert rc == 2 and "another val json" in err and "--overwrite" in err
    before = (tmp_path / "ds" / "manifest.json").read_bytes()
    rc, _, err = cli([*args, "--val", GT, "--split", "small:0:32^2"], capsys)
    assert rc == 2 and "other options: splits" in err and (tmp_path / "ds" / "manifest.json").read_bytes() == before
    assert cli([*args, "--val", GT, "--split", "small:0:32^2", "--overwrite"], capsys)[0] == 0
    assert (tmp_path / "ds" / "data-small.yaml").is_file()


def test_eval_of_whole_set_predictions_against_a_split_says_so_and_subset_scores_the_split(tmp_path, capsys):
    """Predictions of all 200 val images against a json of every third one: one plain message
    (not an "unknown image id" per image) naming --subset; with it, pycocotools' numbers on the
    split's own predictions (filtered here independently)."""
    from yolo_helpers import pycocotools_metrics

    data = json.loads(GT.read_text())
    images = data["images"][::3]
    keep = {im["id"] for im in images}
    split = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    rc, _, err = cli(["eval", tmp_path / "split.json", PREDS[0]], capsys)
    outside = {p["image_id"] for p in preds_of(PREDS[0])} - keep
    assert rc == 2 and f"on {len(outside)} image(s) the ground truth does not hold" in err and "--subset" in err
    assert err.count("unknown image id") == 0
    rc, _, err = cli(["eval", tmp_path / "split.json", PREDS[0], "--subset", "--json", tmp_path / "m.json"], capsys)
    mine = [p for p in preds_of(PREDS[0]) if p["image_id"] in keep]
    assert rc == 0 and f"left out {len(preds_of(PREDS[0])) - len(mine):,} predictions on {len(outside)} other" in err
    got = json.loads((tmp_path / "m.json").read_text())
    want = pycocotools_metrics(tmp_path / "split.json", mine)
    assert [got["AP"], got["AP_small"]] == pytest.approx([want["coco/AP"], want["coco/AP_small"]], abs=1e-6)
    wrong = {**split, "images": [{**im, "id": im["id"] + 100_000} for im in images], "annotations": []}
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    rc, _, err = cli(["eval", tmp_path / "wrong.json", PREDS[0], "--subset"], capsys)
    assert rc == 2 and "0 of" in err and "wrong dataset or split" in err  # nothing on these images: not a subset
