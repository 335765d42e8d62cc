"""Quirks of public COCO files, each through eda, fix, convert and eval, checked against the raw
json read here, pycocotools and Ultralytics:

- image and annotation ids starting at 0 (annotation id 0 is a trap: COCO evaluation marks
  "unmatched" with 0), category id 0 and non-contiguous category ids listed out of order,
  file names in sub-folders, images without annotations, ``area`` fields from masks;
- phone photos whose EXIF orientation turns them: the json's width/height describe the stored
  pixels while Ultralytics loads the turned image.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smallbox.cli import main
from smallbox.datasets.imagefiles import image_size
from smallbox.datasets.manifest import load_manifest

DEEPPCB = Path(__file__).resolve().parents[1] / "data" / "deeppcb"
CATEGORY_IDS = {1: 0, 2: 40, 3: 7, 4: 99, 5: 3, 6: 12}  # DeepPCB id -> quirky id (0, gaps, listed out of order)
N_IMAGES, EMPTY = 12, (4, 9)  # images 4 and 9 keep no annotation
ORIENTATION = 0x0112


def read_label_rows(path: Path) -> np.ndarray:
    text = path.read_text(encoding="utf-8")
    return np.array([[float(v) for v in line.split()] for line in text.splitlines()], dtype=np.float64).reshape(-1, 5)


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    """12 DeepPCB val images as a public COCO file may have them (see the module docstring)."""
    root = tmp_path_factory.mktemp("quirky")
    src = json.loads((DEEPPCB / "annotations" / "val.json").read_text())
    images, annotations, id_of = [], [], {}
    for k, im in enumerate(src["images"][:N_IMAGES]):
        folder = "line-a" if k % 2 else "line-b/scans"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        os.link(DEEPPCB / "images" / im["file_name"], root / "images" / folder / im["file_name"])
        id_of[im["id"]] = k
        images.append({"id": k, "file_name": f"{folder}/{im['file_name']}", "width": im["width"], "height": im["height"]})
    for a in src["annotations"]:
        if a["image_id"] in id_of and id_of[a["image_id"]] not in EMPTY:
            w, h = a["bbox"][2:]
            area = round(0.8 * w * h, 1) if len(annotations) % 2 else w * h  # every other one a mask's area
            annotations.append({"id": len(annotations), "image_id": id_of[a["image_id"]], "bbox": a["bbox"],
                                "category_id": CATEGORY_IDS[a["category_id"]], "area": area, "iscrowd": 0})
    categories = [{"id": CATEGORY_IDS[c["id"]], "name": c["name"]} for c in src["categories"]]
    data = {"info": {"year": 2024}, "images": images, "annotations": annotations, "categories": categories}
    path = root / "quirky.json"
    path.write_text(json.dumps(data))
    preds = [dict(p, image_id=id_of[p["image_id"]], category_id=CATEGORY_IDS[p["category_id"]])
             for p in json.load(gzip.open(DEEPPCB / "predictions" / "yolov8n_640_60_s0_val.json.gz")) if p["image_id"] in id_of]
    (root / "preds.json").write_text(json.dumps(preds))
    return {"root": root, "json": path, "images": root / "images", "data": data, "preds": root / "preds.json"}


@pytest.fixture(scope="module")
def fixed(quirky):
    out = quirky["root"] / "quirky.fixed.json"
    assert main(["fix", str(quirky["json"]), "--out", str(out), "--images", str(quirky["images"])]) == 0
    return out


def test_eda_reports_the_zero_id_and_analyses_every_box(quirky, tmp_path, capsys):
    out = tmp_path / "eda"
    assert main(["eda", str(quirky["json"]), "--out", str(out), "--images", str(quirky["images"])]) == 0
    assert f"smallbox fix {quirky['json']}" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    data = quirky["data"]
    assert [(p["kind"], p["count"], p["first_ids"]) for p in summary["problems"]] == [("zero_annotation_id", 1, [0])]
    assert summary["boxes"] == len(data["annotations"]) and summary["set_aside"] == {"images": {}, "annotations": {}}
    assert (summary["images"], summary["images_without_boxes"]) == (N_IMAGES, len(EMPTY))
    masks = sum(abs(a["area"] - a["bbox"][2] * a["bbox"][3]) > 0.01 * a["bbox"][2] * a["bbox"][3] for a in data["annotations"])
    assert summary["area_field_differs"] == masks > 0 and any("mask areas" in line for line in summary["advice"])
    by_id = {c["id"]: c["boxes"] for c in summary["categories"]}
    assert by_id == {cid: sum(a["category_id"] == cid for a in data["annotations"]) for cid in CATEGORY_IDS.values()}
    assert "sample_crops.png" in summary["plots"]


def test_fix_renumbers_only_the_zero_id(quirky, fixed):
    data, repaired = quirky["data"], json.loads(fixed.read_text())
    log = json.loads(fixed.with_name("quirky.fixed.changes.json").read_text())
    new_id = max(a["id"] for a in data["annotations"]) + 1
    assert [(c["kind"], c["annotation"], c["after"]) for c in log["changes"]] == [("zero_annotation_id", 0, {"id": new_id})]
    expected = copy.deepcopy(data)
    expected["annotations"][0]["id"] = new_id
    assert repaired == expected


def test_convert_refuses_the_zero_id_and_converts_the_fixed_file(quirky, fixed, tmp_path, capsys):
    assert main(["convert", str(quirky["json"]), "--images", str(quirky["images"]), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "annotation 0 (image 0) has id 0" in err and f"smallbox fix {quirky['json']}" in err
    out = tmp_path / "yolo"
    assert main(["convert", str(fixed), "--images", str(quirky["images"]), "--out", str(out), "--val-fraction", "0.25"]) == 0
    m = load_manifest(out / "data.yaml")
    ranked = sorted(CATEGORY_IDS.values())
    assert m.category_ids == ranked == [0, 3, 7, 12, 40, 99]
    data = json.loads(fixed.read_text())
    images = {im["id"]: im for im in data["images"]}
    seen = set()
    for split in ("train", "val"):
        for name, image_id in m.splits[split].items():
            seen.add(image_id)
            assert os.path.samefile(out / "images" / split / name, quirky["images"] / images[image_id]["file_name"])
            rows = read_label_rows(out / "labels" / split / f"{Path(name).stem}.txt")
            W, H = images[image_id]["width"], images[image_id]["height"]
            want = sorted((ranked.index(a["category_id"]), (a["bbox"][0] + a["bbox"][2] / 2) / W, (a["bbox"][1] + a["bbox"][3] / 2) / H,
                           a["bbox"][2] / W, a["bbox"][3] / H) for a in data["annotations"] if a["image_id"] == image_id)
            assert np.allclose(sorted(map(tuple, rows)), want, atol=1e-6) if want else len(rows) == 0, name
    assert seen == set(range(N_IMAGES))  # image id 0 included, the two empty images as negatives


def test_eval_on_the_fixed_file_equals_pycocotools(quirky, fixed, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    assert main(["eval", str(fixed), str(quirky["preds"]), "--json", str(tmp_path / "m.json")]) == 0
    ours = json.loads((tmp_path / "m.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(fixed))
        ev = COCOeval(gt, gt.loadRes(str(quirky["preds"])), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    keys = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")
    assert [ours[k] for k in keys] == pytest.approx(list(ev.stats), abs=1e-6)
    assert ev.stats[0] > 0.3  # real predictions: a number worth comparing


# --- EXIF orientation ----------------------------------------------------------------------------

def exif_image(path: Path, pixels: Image.Image, orientation: int, **save):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    pixels.save(path, exif=exif, **save)


def ultralytics_sizes(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(exif_size, the loaded image's (w, h))`` as Ultralytics reports them."""
    from ultralytics.data.utils import exif_size
    from ultralytics.utils.patches import imread

    with Image.open(path) as im:
        reported = tuple(exif_size(im))
    return reported, tuple(imread(str(path)).shape[1::-1])


def move_exif_after_pixels(path: Path):
    """Rewrite a PNG with its eXIf chunk after the last IDAT (allowed by the PNG extensions)."""
    data = path.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append(data[pos:pos + 12 + length])
        pos += 12 + length
    exif = next(c for c in chunks if c[4:8] == b"eXIf")
    rest = [c for c in chunks if c is not exif]
    path.write_bytes(data[:8] + b"".join(rest[:-1]) + exif + rest[-1])
    assert zlib.crc32(exif[4:-4]) == struct.unpack(">I", exif[-4:])[0]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_image_size_is_what_ultralytics_loads(tmp_path, fmt, orientation):
    path = tmp_path / f"im.{fmt.lower()}"
    exif_image(path, Image.new("RGB", (64, 48), (90, 120, 30)), orientation)
    reported, loaded = ultralytics_sizes(path)
    assert image_size(path) == loaded == reported
    assert loaded == ((48, 64) if orientation >= 5 else (64, 48))


def test_png_exif_after_the_pixels_counts_too(tmp_path):
    """The PNG extensions allow eXIf after the pixel data; OpenCV (Ultralytics' loader) applies it
    there as well, and image_size must find it without decoding the image."""
    path = tmp_path / "after.png"
    exif_image(path, Image.new("RGB", (64, 48)), 6)
    move_exif_after_pixels(path)
    with Image.open(path) as im:
        assert "exif" not in im.info  # not in the header PIL reads on open
    assert image_size(path) == ultralytics_sizes(path)[1] == ultralytics_sizes(path)[0] == (48, 64)


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory):
    """Four DeepPCB images cropped to 640x480 and stored as a phone does: pixels kept in the sensor's
    portrait orientation (480x640) with EXIF orientation 6, so that viewers and Ultralytics show the
    640x480 landscape picture the boxes were drawn on. The json gives the stored 480x640."""
    root = tmp_path_factory.mktemp("phone")
    src = json.loads((DEEPPCB / "annotations" / "val.json").read_text())
    (root / "images").mkdir()
    images, annotations = [], []
    for im in src["images"][:4]:
        with Image.open(DEEPPCB / "images" / im["file_name"]) as pic:
            landscape = pic.convert("RGB").crop((0, 0, 640, 480))
        name = Path(im["file_name"]).stem + ".jpg"
        exif_image(root / "images" / name, landscape.transpose(Image.Transpose.ROTATE_90), 6, quality=95)
        images.append({"id": im["id"], "file_name": name, "width": 480, "height": 640})
        annotations += [a for a in src["annotations"] if a["image_id"] == im["id"] and a["bbox"][1] + a["bbox"][3] <= 480]
    data = {"images": images, "annotations": annotations, "categories": src["categories"]}
    (root / "phone.json").write_text(json.dumps(data))
    return {"root": root, "json": root / "phone.json", "images": root / "images", "data": data}


def test_exif_photos_stop_convert_and_fix_sets_the_loaded_size(phone_photos, tmp_path, capsys):
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    ann, images, data = phone_photos["json"], phone_photos["images"], phone_photos["data"]
    for im in data["images"]:
        assert ultralytics_sizes(images / im["file_name"]) == ((640, 480), (640, 480))  # what the boxes were drawn on
    assert main(["convert", str(ann), "--images", str(images), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    first = data["images"][0]
    assert f"image {first['id']} says 480x640 but {images / first['file_name']} loads as 640x480 (EXIF orientation)" in err
    assert f"run: smallbox fix {ann} --out phone.fixed.json --images {images}" in err

    assert main(["eda", str(ann), "--out", str(tmp_path / "eda"), "--images", str(images)]) == 0
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    assert [(p["kind"], p["count"]) for p in summary["problems"]] == [("image_size_swapped", 4)]
    assert summary["boxes"] == len(data["annotations"])  # analysed against the loaded size: none outside

    fixed = tmp_path / "phone.fixed.json"
    assert main(["fix", str(ann), "--out", str(fixed), "--images", str(images)]) == 0
    log = json.loads((tmp_path / "phone.fixed.changes.json").read_text())
    assert {(c["image"], json.dumps(c["after"])) for c in log["changes"]} == {(im["id"], '{"width": 640, "height": 480}') for im in data["images"]}
    out = tmp_path / "yolo"
    assert main(["convert", str(fixed), "--images", str(images), "--out", str(out), "--val", str(fixed)]) == 0

    dataset = YOLODataset(img_path=str(out / "images" / "val"), data=check_det_dataset(str(out / "data.yaml")),
                          imgsz=160, augment=False, task="detect")
    ids = load_manifest(out / "data.yaml").image_ids_by_stem("val")
    compared = 0
    for label in dataset.labels:
        h, w = label["shape"]  # Ultralytics' own reading of the image size
        assert (w, h) == (640, 480)
        cx, cy, bw, bh = (label["bboxes"] * [w, h, w, h]).T
        ours = np.sort(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1), axis=0)
        boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == ids[Path(label["im_file"]).stem]]
        assert np.allclose(ours, np.sort(np.array(boxes, dtype=np.float64), axis=0), atol=1e-3)
        compared += len(boxes)
    assert compared == len(data["annotations"]) > 0


def test_boxes_are_placed_on_the_image_as_loaded_not_as_the_json_says(phone_photos, tmp_path):
    """The files are read while the boxes are checked against the json's sizes; where a file
    disagrees, the boxes are checked again against the loaded size: a box inside the json's
    480x640 but below the loaded 640x480 is outside, and boxes right of x = 480 (outside the
    json's size, inside the loaded one) are not."""
    from smallbox.datasets.coco import inspect_coco

    data = copy.deepcopy(phone_photos["data"])
    first = data["images"][0]
    right_of_480 = [a for a in data["annotations"] if a["bbox"][0] + a["bbox"][2] > 480]
    assert right_of_480  # outside the json's width: the first check flags them, the second must not
    low = {"id": 10**6, "image_id": first["id"], "category_id": data["annotations"][0]["category_id"],
           "bbox": [0, 460, 40, 80], "area": 3200, "iscrowd": 0}
    data["annotations"].append(low)
    ann = tmp_path / "phone-low.json"
    ann.write_text(json.dumps(data))

    dataset = inspect_coco(ann, phone_photos["images"])
    outside = [p for p in dataset.problems if p.section == "annotations"]
    assert [(p.kind, p.id) for p in outside] == [("box_outside", low["id"])]
    assert "outside the 640x480 image by 60 px" in outside[0].message
    assert sum(p.kind == "image_size_swapped" for p in dataset.problems) == len(data["images"])
    assert len(dataset.annotations) == len(data["annotations"]) - 1


def test_every_quirk_at_once_eda_fix_then_eval_and_convert(quirky, tmp_path, capsys):
    """The issue's "done when": a json with every quirk gets its report and plots from eda, its
    repairs and change log from fix; eval and convert refuse it naming the repair, and take the
    repaired file."""
    root = tmp_path / "all"
    data = copy.deepcopy(quirky["data"])
    images = root / "images"
    for im in data["images"]:
        (images / im["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        os.link(quirky["images"] / im["file_name"], images / im["file_name"])
    (images / "phone").mkdir()
    with Image.open(quirky["images"] / data["images"][1]["file_name"]) as pic:
        exif_image(images / "phone" / "p.jpg", pic.convert("RGB").crop((0, 0, 640, 480)).transpose(Image.Transpose.ROTATE_90), 6)
    data["images"].append({"id": 100, "file_name": "phone/p.jpg", "width": 480, "height": 640})
    anns = data["annotations"]
    anns.append(dict(anns[1], id=len(anns), image_id=100, bbox=[500, 300, 40, 30], area=1200))  # x 500: only fits 640 wide
    anns[2]["id"] = anns[3]["id"]  # duplicate
    anns[5]["bbox"] = [-0.5, *anns[5]["bbox"][1:]]
    anns[6]["bbox"] = [*anns[6]["bbox"][:3], 0]
    del anns[7]["area"]
    ann = root / "all.json"
    ann.write_text(json.dumps(data))

    out = tmp_path / "eda"
    assert main(["eda", str(ann), "--out", str(out), "--images", str(images)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {p["kind"] for p in summary["problems"]} == {"zero_annotation_id", "duplicate_annotation_id", "box_slightly_outside",
                                                        "zero_size_box", "missing_area", "image_size_swapped"}
    assert summary["boxes"] == len(anns) - 1 and summary["set_aside"]["annotations"] == {"box of zero width or height": 1}
    assert sorted(p.name for p in out.iterdir()) == sorted(summary["plots"] + ["summary.json", "summary.md"])
    assert len(summary["plots"]) == 10 and "## Problems" in (out / "summary.md").read_text()

    preds = quirky["preds"]
    capsys.readouterr()
    assert main(["eval", str(ann), str(preds)]) == 2
    assert f"run: smallbox fix {ann} --out all.fixed.json" in capsys.readouterr().err
    assert main(["convert", str(ann), "--images", str(images), "--out", str(tmp_path / "yolo")]) == 2
    assert f"run: smallbox fix {ann} --out all.fixed.json --images {images}" in capsys.readouterr().err
    fixed = root / "all.fixed.json"
    assert main(["fix", str(ann), "--out", str(fixed), "--images", str(images)]) == 0
    log = json.loads((root / "all.fixed.changes.json").read_text())
    assert {c["kind"] for c in log["changes"]} == {p["kind"] for p in summary["problems"]}
    assert main(["eval", str(fixed), str(preds)]) == 0
    assert main(["convert", str(fixed), "--images", str(images), "--out", str(tmp_path / "yolo"), "--val-fraction", "0.25"]) == 0
