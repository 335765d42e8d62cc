"""Tiled training data (``smallbox convert --tiles``) against SAHI's ``slice_coco`` on the same
settings (windows, clipped boxes, ids, counts; square grey and non-square colour images, tile x
overlap products with fractions above and below .5), the manifest's map back to the source
images, and a model trained on tiles scored by its training loop exactly as ``smallbox slice``
+ ``smallbox eval`` score its saved weights."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from yolo_helpers import DEEPPCB, ROOT, subset_json

from smallbox.cli import main
from smallbox.datasets.tiles import TileSpec, tile_dataset

BCCD = ROOT / "data" / "bccd"


def sahi_tiles(json_path: Path, images: Path, tile: int, overlap: float, min_visibility: float) -> dict:
    """SAHI's tiles as ``{(source file stem, window): sorted [(category, bbox rounded)]}``."""
    from sahi.slicing import slice_coco

    data, _ = slice_coco(str(json_path), str(images), "", output_dir=None, slice_height=tile, slice_width=tile,
                         overlap_height_ratio=overlap, overlap_width_ratio=overlap, min_area_ratio=min_visibility,
                         verbose=False)
    return _by_window(data, sahi_names=True)


def _by_window(data: dict, sahi_names: bool = False) -> dict:
    boxes = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        boxes[a["image_id"]].append((a["category_id"], tuple(round(float(v), 6) for v in a["bbox"])))
    out = {}
    for im in data["images"]:
        parts = Path(im["file_name"]).stem.split("_")
        stem = "_".join(parts[:-5] if sahi_names else parts[:-4])  # SAHI adds a running index before the window
        window = tuple(int(v) for v in parts[-4:])
        out[(stem, window)] = sorted(boxes[im["id"]])
    return out


@pytest.mark.parametrize("source, tile, overlap, min_visibility", [
    ("deeppcb", 256, 0.15, 0.1),   # 38.4 px overlap: fraction .4
    ("deeppcb", 320, 0.0, 0.1),
    ("deeppcb", 200, 0.33, 0.3),   # 66.0 px
    ("bccd", 300, 0.27, 0.1),      # 81.0 px on 640x480 colour photos
    ("bccd", 256, 0.23, 0.5),      # 58.88 px: fraction above .5
])
def test_tiles_are_sahis(tmp_path, source, tile, overlap, min_visibility):
    if source == "deeppcb":
        gt, images = subset_json(DEEPPCB / "annotations" / "val.json", 5, tmp_path / "gt.json"), DEEPPCB / "images"
    else:
        gt, images = BCCD / "annotations" / "val.json", BCCD / "images"
    ours, origins = tile_dataset(json.loads(Path(gt).read_text()), TileSpec(tile, overlap, min_visibility))
    theirs = sahi_tiles(gt, images, tile, overlap, min_visibility)
    assert _by_window(ours) == theirs
    assert len(ours["images"]) == len(theirs) and [im["id"] for im in ours["images"]] == list(range(1, len(theirs) + 1))
    source_ids = {im["file_name"]: im["id"] for im in json.loads(Path(gt).read_text())["images"]}
    for im in ours["images"]:
        o = origins[im["file_name"]]
        assert o["image_id"] == source_ids[o["file_name"]] and (o["width"], o["height"]) == (im["width"], im["height"])


def test_convert_tiles_writes_a_dataset_that_maps_back(tmp_path):
    train = subset_json(DEEPPCB / "annotations" / "train-699.json", 3, tmp_path / "train.json")
    val = subset_json(DEEPPCB / "annotations" / "val.json", 2, tmp_path / "val.json")
    assert main(["convert", str(train), "--images", str(DEEPPCB / "images"), "--val", str(val), "--out",
                 str(tmp_path / "ds"), "--tiles", "320,0.25", "--empty-tiles", "0"]) == 0
    ds = tmp_path / "ds"
    manifest = json.loads((ds / "manifest.json").read_text())
    tiles_json = json.loads((ds / "annotations" / "train-tiles.json").read_text())
    origins = manifest["tiles"]["train-tiles"]
    assert set(origins) == set(os.listdir(ds / "images" / "train-tiles")) == {im["file_name"] for im in tiles_json["images"]}
    with_boxes = {a["image_id"] for a in tiles_json["annotations"]}
    assert all(im["id"] in with_boxes for im in tiles_json["images"])  # --empty-tiles 0: none without a box
    from PIL import Image

    for name, o in list(origins.items())[:4]:  # each tile is its window of the source image, pixel for pixel
        with Image.open(DEEPPCB / "images" / o["file_name"]) as src, Image.open(ds / "images" / "train-tiles" / name) as t:
            window = src.crop((o["x"], o["y"], o["x"] + o["width"], o["y"] + o["height"]))
            assert window.tobytes() == t.tobytes() and window.mode == t.mode
    from smallbox.datasets.manifest import dataset_section, read_data_yaml

    section = dataset_section(read_data_yaml(ds / "data-tiles.yaml"))
    assert section.tiles["size"] == 320 and section.train_long_side == 320


@pytest.fixture(scope="module")
def tiled_run(tmp_path_factory):
    """The bundled YOLOv8n fine-tuned for one epoch on 160 px tiles of 4 DeepPCB images (so that it
    detects something), validated each epoch on 3 whole val images through sliced inference."""
    folder = tmp_path_factory.mktemp("tiled")
    train = subset_json(DEEPPCB / "annotations" / "train-699.json", 4, folder / "train.json")
    val = subset_json(DEEPPCB / "annotations" / "val.json", 3, folder / "val.json")
    assert main(["convert", str(train), "--images", str(DEEPPCB / "images"), "--val", str(val), "--out",
                 str(folder / "ds"), "--tiles", "320,0"]) == 0
    assert main(["yolo", "train", f"model={ROOT / 'data' / 'models' / 'yolov8n-deeppcb-320.pt'}",
                 f"data={folder / 'ds' / 'data-tiles.yaml'}", "imgsz=320", "epochs=1", "batch=8", "workers=0",
                 "device=cpu", "lr0=0.0005", "warmup_epochs=0", "optimizer=SGD", f"project={folder}", "name=run",
                 "plots=False", "mosaic=0"]) == 0
    return folder


def test_a_tiled_run_scores_what_slice_and_eval_give_for_its_weights(tiled_run):
    rows = list(csv.DictReader(open(tiled_run / "run" / "results.csv")))
    last = {k.strip(): float(v) for k, v in rows[-1].items()}
    assert last["coco/AP"] > 0.02  # a model that detects (0.04 here): the comparison can fail
    out = tiled_run / "sliced.json"
    assert main(["slice", str(tiled_run / "run" / "weights" / "last.pt"), "--images", str(tiled_run / "ds" / "images" / "val"),
                 "--gt", str(tiled_run / "ds" / "annotations" / "val.json"), "--out", str(out), "--device", "cpu"]) == 0
    assert main(["eval", str(tiled_run / "ds" / "annotations" / "val.json"), str(out), "--json",
                 str(tiled_run / "eval.json")]) == 0
    ev = json.loads((tiled_run / "eval.json").read_text())
    for key in ("AP", "AP50", "AP_small", "AP_medium"):
        assert last[f"coco/{key}"] == pytest.approx(ev[key], abs=1e-5), key
    info = json.loads((tiled_run / "run" / "smallbox.json").read_text())
    assert info["evaluation"]["sliced"]["tile"] == 320  # slice's default tile is the one the model was trained on


def test_the_checkpoint_records_its_training_scale(tiled_run):
    from ultralytics.nn.tasks import load_checkpoint

    from smallbox.adapters.yolo.metadata import read_metadata
    from smallbox.fusion.sliced import tile_input_size

    meta = read_metadata(load_checkpoint(tiled_run / "run" / "weights" / "best.pt")[0])
    assert meta["train_scale"] == 1.0 and meta["tiles"]["size"] == 320 and meta["train_long_side"] == 320
    assert [c["category_id"] for c in meta["classes"]] == [1, 2, 3, 4, 5, 6]
    # tiles of a 1280 px mosaic are shown at the training scale, not shrunk by the mosaic's size
    assert tile_input_size((1280, 1280), 320, 320, 1.25, train_scale=1.0) == 320
    assert tile_input_size((1280, 1280), 640, 320, 1.25, train_scale=0.5) == 384  # 400 px, to the stride
    assert tile_input_size((1280, 1280), 640, 320, 1.25) == 192  # without the record: the old rule shrinks them
