"""One image-id rule for every command that predicts (smallbox.predictions.images): `yolo
predict`, `tv predict` and `slice` on the same unlabeled folder agree on the ids (1..N by file
name, named in images.json) and on the category ids (the models' training data), so `smallbox
ensemble` fuses them. Mapped back through images.json, each output is the same command run with
the folder's json, and the fusion scores what pycocotools says against that json.

Data: the odd DeepPCB subset (non-square, category ids 3..99, scattered image ids), with tiny
models trained on it by the real trainers (conftest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from yolo_helpers import pycocotools_stats

from smallbox.cli import main


@pytest.fixture(scope="module")
def folder(odd_deeppcb, tmp_path_factory):
    """The val images copied flat into a folder without annotations, and the json that names
    them there (the odd val json with base-name file names)."""
    root = tmp_path_factory.mktemp("unlabeled")
    images = root / "images"
    images.mkdir()
    gt = json.loads(odd_deeppcb["val"].read_text())
    for im in gt["images"]:
        name = im["file_name"].rsplit("/", 1)[-1]
        shutil.copyfile(odd_deeppcb["images"] / im["file_name"], images / name)
        im["file_name"] = name
    (root / "gt.json").write_text(json.dumps(gt))
    return {"images": images, "gt": root / "gt.json", "root": root}


@pytest.fixture(scope="module")
def outputs(folder, tiny_yolo_run, tiny_tv_run, tmp_path_factory):
    """Each command twice on the folder: without a json (the folder rule) and with it."""
    out = tmp_path_factory.mktemp("outputs")
    images, gt = str(folder["images"]), str(folder["gt"])
    yolo = ["yolo", "predict", f"model={tiny_yolo_run['weights']}", f"source={images}", "imgsz=96", "conf=0.001",
            "device=cpu", "save=False", "verbose=False", f"project={out}", "exist_ok=True"]
    tv = ["tv", "predict", str(tiny_tv_run["weights"]), "--images", images, "--device", "cpu"]
    sliced = ["slice", str(tiny_yolo_run["weights"]), "--images", images, "--tile", "320", "--imgsz", "96",
              "--device", "cpu"]
    assert main([*yolo, "name=yolo"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMALLBOX_IMAGE_IDS", gt)
        assert main([*yolo, "name=yolo-json"]) == 0
    assert main([*tv, "--out", str(out / "tv" / "predictions.json")]) == 0
    assert main([*tv, "--coco", gt, "--out", str(out / "tv-json" / "predictions.json")]) == 0
    assert main([*sliced, "--out", str(out / "slice" / "predictions.json")]) == 0
    assert main([*sliced, "--gt", gt, "--out", str(out / "slice-json" / "predictions.json")]) == 0
    return out


def test_folder_rule_numbers_by_file_name_with_each_images_size(tmp_path):
    """20 small PNGs written in random order with random mixed-case names and sizes (none square):
    ids 1..20 in sorted file-name order (code points: ``B`` before ``a``, as Ultralytics sorts),
    whatever order the directory lists them in; ``(width, height)`` as PIL writes them."""
    from PIL import Image

    from smallbox.predictions import index_folder

    rng = np.random.default_rng(7)
    sizes = {}
    for k in rng.permutation(20):
        name = f"{''.join(rng.choice(list('aAbBcCdD'), 6))}-{k}.png"
        width, height = int(rng.integers(2, 40)), int(rng.integers(41, 80))
        width, height = (width, height) if k % 2 else (height, width)
        Image.new("L", (width, height)).save(tmp_path / name)
        sizes[name] = (width, height)
    index = index_folder(tmp_path)
    assert index.source == "folder"
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in index.images] == [
        (i, name, *sizes[name]) for i, name in enumerate(sorted(sizes), start=1)]


def read(path):
    return json.loads(path.read_text())


def ids_file(folder: Path) -> Path:
    """The ids json beside a folder's predictions: a run folder's images.json (yolo predict), or
    named after the predictions file (slice, tv predict: predictions.images.json)."""
    return folder / "images.json" if (folder / "images.json").exists() else folder / "predictions.images.json"


def remap(preds, images_json, gt_json):
    """Predictions of the folder rule -> the json's ids, by file name (independent of smallbox)."""
    name_of = {im["id"]: im["file_name"] for im in read(images_json)["images"]}
    id_of = {im["file_name"]: im["id"] for im in read(gt_json)["images"]}
    return [{**p, "image_id": id_of[name_of[p["image_id"]]]} for p in preds]


def as_rows(preds):
    return sorted((p["image_id"], p["category_id"], round(p["score"], 5), *np.round(p["bbox"], 3)) for p in preds)


COMMANDS = ("yolo", "tv", "slice")


def test_every_command_numbers_the_folder_the_same_way(outputs, folder):
    files = sorted(p.name for p in folder["images"].iterdir())
    for name in COMMANDS:
        images = read(ids_file(outputs / name))["images"]
        assert [(im["id"], im["file_name"]) for im in images] == list(enumerate(files, start=1)), name
        sizes = {im["file_name"]: (im["width"], im["height"]) for im in read(folder["gt"])["images"]}
        assert {im["file_name"]: (im["width"], im["height"]) for im in images} == sizes  # portrait ones too
        assert not ids_file(outputs / f"{name}-json").exists()


def test_category_ids_are_the_training_datas_not_class_indices(outputs, folder):
    odd = {c["id"] for c in read(folder["gt"])["categories"]}
    for name in COMMANDS:
        for variant in (name, f"{name}-json"):
            preds = read(outputs / variant / "predictions.json")
            assert preds and {p["category_id"] for p in preds} <= odd, variant
        names = {c["id"]: c["name"] for c in read(ids_file(outputs / name))["categories"]}
        assert names == {c["id"]: c["name"] for c in read(folder["gt"])["categories"]}


def test_a_moved_checkpoint_keeps_its_category_ids(tiny_yolo_run, folder, tmp_path):
    """The checkpoint copied to a machine without its dataset (train_args' data.yaml gone): the
    category ids come from the metadata it carries (3..99 here), not 1..nc."""
    import torch

    ckpt = torch.load(tiny_yolo_run["weights"], map_location="cpu", weights_only=False)
    ckpt["train_args"] = {**ckpt["train_args"], "data": str(tmp_path / "elsewhere" / "data.yaml")}
    torch.save(ckpt, tmp_path / "moved.pt")
    assert main(["yolo", "predict", f"model={tmp_path / 'moved.pt'}", f"source={folder['images']}", "imgsz=96",
                 "conf=0.001", "device=cpu", "save=False", "verbose=False", f"project={tmp_path}", "name=p"]) == 0
    preds = read(tmp_path / "p" / "predictions.json")
    odd = {c["id"] for c in read(folder["gt"])["categories"]}
    assert preds and {p["category_id"] for p in preds} <= odd and odd != set(range(1, len(odd) + 1))


@pytest.mark.parametrize("name", COMMANDS)
def test_folder_rule_mapped_back_equals_the_json_run(outputs, folder, name):
    plain = read(outputs / name / "predictions.json")
    with_json = read(outputs / f"{name}-json" / "predictions.json")
    assert as_rows(remap(plain, ids_file(outputs / name), folder["gt"])) == as_rows(with_json)


def test_the_three_fuse_and_score_against_the_folders_json(outputs, folder, tmp_path):
    members = [str(outputs / name / "predictions.json") for name in COMMANDS]
    fused = tmp_path / "fused.json"
    assert main(["ensemble", *members, "--images", str(folder["images"]), "--method", "wbf", "--out", str(fused)]) == 0
    members_json = [str(outputs / f"{name}-json" / "predictions.json") for name in COMMANDS]
    fused_json = tmp_path / "fused-json.json"
    assert main(["ensemble", *members_json, "--gt", str(folder["gt"]), "--method", "wbf", "--out", str(fused_json)]) == 0
    remapped = remap(read(fused), ids_file(outputs / "yolo"), folder["gt"])
    assert as_rows(remapped) == as_rows(read(fused_json))
    metrics = tmp_path / "m.json"
    assert main(["eval", str(folder["gt"]), str(fused_json), "--json", str(metrics)]) == 0
    ours = read(metrics)
    ref = list(pycocotools_stats(folder["gt"], remapped))
    assert [ours[k] for k in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")] == pytest.approx(ref[:6], abs=1e-6)


def test_folder_numbered_predictions_against_a_ground_truth_numbered_1_to_n_in_another_order(tmp_path, capsys):
    """Predictions of an unlabeled folder carry ids 1..N by file name (with their images json); a
    ground truth also numbered 1..N, but in reverse file-name order, would match id to id and
    score boxes against the wrong images. Every command that scores or fuses them against it says
    so (exit 2); a ground truth numbered in the folder's order is scored."""
    from smallbox.datasets.imagefiles import list_images
    from smallbox.predictions import index_folder, write_images_json

    val = json.loads((Path(__file__).resolve().parents[1] / "data" / "deeppcb" / "annotations" / "val.json").read_text())
    images = tmp_path / "images"
    images.mkdir()
    chosen = val["images"][:4]
    for im in chosen:
        shutil.copyfile(Path(__file__).resolve().parents[1] / "data" / "deeppcb" / "images" / im["file_name"],
                        images / im["file_name"])
    files = [p.name for p in list_images(images)]  # the folder's order, as yolo predict lists it
    name_of = {im["id"]: im["file_name"] for im in chosen}
    preds = [{"image_id": files.index(name_of[a["image_id"]]) + 1, "category_id": a["category_id"], "bbox": a["bbox"],
              "score": 0.9} for a in val["annotations"] if a["image_id"] in name_of]  # the truth, numbered 1..N
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    write_images_json(tmp_path, index_folder(images), val["categories"], tmp_path / "preds.json")
    for order, name in ((sorted(files, reverse=True), "reversed"), (files, "same")):
        ids = {f: k for k, f in enumerate(order, 1)}
        by_old = {im["id"]: ids[im["file_name"]] for im in chosen}
        gt = {"images": [dict(im, id=by_old[im["id"]]) for im in chosen], "categories": val["categories"],
              "annotations": [dict(a, image_id=by_old[a["image_id"]]) for a in val["annotations"] if a["image_id"] in by_old]}
        (tmp_path / f"{name}.json").write_text(json.dumps(gt))
    for command in (["eval", tmp_path / "reversed.json", tmp_path / "preds.json"],
                    ["significance", tmp_path / "reversed.json", tmp_path / "preds.json", "--", tmp_path / "preds.json"],
                    ["ensemble", tmp_path / "preds.json", tmp_path / "preds.json", "--gt", tmp_path / "reversed.json",
                     "--out", tmp_path / "fused.json"]):
        capsys.readouterr()
        assert main([str(a) for a in command]) == 2, command[0]
        err = capsys.readouterr().err
        assert "number a folder's files 1..N" in err and "Predict again with the ground truth" in err, command[0]
    assert main(["eval", str(tmp_path / "same.json"), str(tmp_path / "preds.json"), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["AP"] == pytest.approx(1.0)  # the boxes are the truth
