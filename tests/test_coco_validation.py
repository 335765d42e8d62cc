"""Every kind of bad annotation gets an error naming the file and the offending id."""

import json
import re
import shutil

import pytest

from smallbox.cli import main
from smallbox.datasets import load_coco
from smallbox.datasets.coco import inspect_coco
from smallbox.errors import SmallboxError


@pytest.fixture
def dataset(tmp_path, deeppcb_val, deeppcb_images):
    """A small real dataset in a scratch folder: 3 DeepPCB images and their boxes."""
    data = json.loads(deeppcb_val.read_text())
    images = data["images"][:3]
    ids = {im["id"] for im in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    root = tmp_path / "images"
    root.mkdir()
    for im in images:
        shutil.copy(deeppcb_images / im["file_name"], root / im["file_name"])
    return data, root


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def _load_error(tmp_path, data, root=None, **kwargs) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(SmallboxError) as e:
        load_coco(path, root, **kwargs)
    assert str(path) in str(e.value)
    return str(e.value)


def test_real_dataset_loads_clean(deeppcb_val, deeppcb_images):
    d = load_coco(deeppcb_val, deeppcb_images)
    raw = json.loads(deeppcb_val.read_text())
    assert len(d.images) == len(raw["images"]) and len(d.annotations) == len(raw["annotations"])
    assert d.category_ids == [1, 2, 3, 4, 5, 6] and d.warnings == []
    assert sorted(d.areas()) == sorted(a["bbox"][2] * a["bbox"][3] for a in raw["annotations"])


def test_missing_keys(tmp_path, dataset):
    data, _ = dataset
    del data["annotations"][1]["bbox"]
    msg = _load_error(tmp_path, data)
    assert f"annotation {data['annotations'][1]['id']}" in msg and "lacks bbox" in msg
    assert "missing or not a list: categories" in _load_error(tmp_path, {"images": [], "annotations": []})


def test_duplicate_ids(tmp_path, dataset):
    data, _ = dataset
    data["images"].append(dict(data["images"][0]))
    data["annotations"].append(dict(data["annotations"][0]))
    data["categories"].append(dict(data["categories"][0]))
    msg = _load_error(tmp_path, data)
    assert f"duplicate image id {data['images'][0]['id']}" in msg
    assert f"duplicate annotation id {data['annotations'][0]['id']}" in msg
    assert "duplicate category id 1" in msg


def test_unknown_image_and_category(tmp_path, dataset):
    data, _ = dataset
    data["annotations"][0]["image_id"] = 777
    data["annotations"][1]["category_id"] = 99
    msg = _load_error(tmp_path, data)
    assert "points at unknown image 777" in msg and "unknown category 99" in msg


@pytest.mark.parametrize("bbox, text", [
    ([1, 2, 3], "need four finite numbers"),
    ([1, 2, float("nan"), 3], "need four finite numbers"),
    ([1, 2, "4", 3], "need four finite numbers"),
    ([10, 10, -3, 5], "width -3"),
    ([10, 10, 5, 0], "height 0"),
])
def test_bad_boxes(tmp_path, dataset, bbox, text):
    data, _ = dataset
    data["annotations"][0]["bbox"] = bbox
    a = data["annotations"][0]
    msg = _load_error(tmp_path, data)
    assert f"annotation {a['id']} (image {a['image_id']})" in msg and text in msg


def test_out_of_image_boxes_error_or_clip(tmp_path, dataset):
    data, _ = dataset
    a = data["annotations"][0]
    a["bbox"], a["area"] = [630, 600, 20, 50], 1000  # the image is 640x640
    mask = data["annotations"][1]
    mask["bbox"], mask["area"] = [-0.5, 10, 20, 20], 321.5  # an area from a mask, not w*h
    msg = _load_error(tmp_path, data)
    assert f"annotation {a['id']} (image {a['image_id']}) has bbox [630, 600, 20, 50] outside the 640x640 image by 10 px" in msg
    assert f"annotation {mask['id']} (image {mask['image_id']}) has bbox [-0.5, 10, 20, 20] outside the 640x640 image by 0.5 px" in msg
    d = load_coco(_write(tmp_path, data), out_of_bounds="clip")
    clipped = {x["id"]: x for x in d.annotations}
    assert clipped[a["id"]]["bbox"] == [630, 600, 10, 40] and clipped[a["id"]]["area"] == 400 and d.clipped == 2
    assert clipped[mask["id"]]["bbox"] == [0, 10, 19.5, 20] and clipped[mask["id"]]["area"] == 321.5  # a box area follows the box, a mask's stays
    assert any("2 box(es) reaching outside" in w for w in d.warnings)


@pytest.mark.parametrize("name, text", [
    ("/etc/passwd", "absolute file_name"),
    ("../secret.png", "escaping the image root"),
    ("a/../../secret.png", "escaping the image root"),
    ("C:\\images\\x.png", "absolute file_name"),
])
def test_file_names_may_not_leave_the_root(tmp_path, dataset, name, text):
    data, _ = dataset
    data["images"][1]["file_name"] = name
    msg = _load_error(tmp_path, data)
    assert f"image {data['images'][1]['id']}" in msg and text in msg


def test_missing_image_file_only_checked_with_a_root(tmp_path, dataset):
    data, root = dataset
    (root / data["images"][2]["file_name"]).unlink()
    msg = _load_error(tmp_path, data, root)
    assert f"image {data['images'][2]['id']}: image file not found" in msg
    assert len(load_coco(_write(tmp_path, data)).images) == 3


def test_unicode_and_spaces_in_file_names(tmp_path, dataset):
    data, root = dataset
    name = "기판 사진/검사 01.png"
    (root / "기판 사진").mkdir()
    shutil.move(root / data["images"][0]["file_name"], root / name)
    data["images"][0]["file_name"] = name
    d = load_coco(_write(tmp_path, data), root)
    assert d.image_path(d.images[0]).is_file()


def test_crowd_kept_and_warnings(tmp_path, dataset):
    data, _ = dataset
    data["annotations"][0]["iscrowd"] = 1
    data["categories"].append({"id": 9, "name": "unused"})
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != data["images"][2]["id"]]
    d = load_coco(_write(tmp_path, data))
    text = " | ".join(d.warnings)
    assert "1 iscrowd box" in text and "categories without boxes: unused" in text
    assert f"ids [{data['images'][2]['id']}]" in text
    assert len(d.areas()) == len(data["annotations"]) - 1 and len(d.areas(include_crowd=True)) == len(data["annotations"])


def test_not_json(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(SmallboxError, match="broken.json: not valid json"):
        load_coco(bad)


def test_cli_reports_without_traceback(tmp_path, dataset, capsys):
    data, _ = dataset
    data["annotations"][0]["bbox"] = [5, 5, 0, 5]
    path = _write(tmp_path, data)
    assert main(["eval", str(path), str(path)]) == 2
    err = capsys.readouterr().err
    assert f"annotation {data['annotations'][0]['id']}" in err and "Traceback" not in err


def test_annotations_of_a_rejected_image_are_not_called_unknown(tmp_path, dataset):
    data, _ = dataset
    image_id = data["images"][0]["id"]
    data["images"][0]["file_name"] = "../outside.png"
    a = next(a for a in data["annotations"] if a["image_id"] == image_id)
    a["bbox"] = [1, 1, -3, 2]
    msg = _load_error(tmp_path, data)
    assert f"image {image_id} has a file_name escaping the image root" in msg
    assert f"annotation {a['id']} (image {image_id}) has width -3" in msg
    assert "unknown image" not in msg


def _set(key, value):
    def change(a, image):
        a[key] = value
    return change


def _box(fn):
    def change(a, image):
        a["bbox"] = fn(a["bbox"], image["width"], image["height"])
    return change


def _delete(key):
    def change(a, image):
        del a[key]
    return change


# one broken annotation each: the kind inspect_coco must name, and whether load_coco still accepts it
ANNOTATION_QUIRKS = {
    "id 0": (_set("id", 0), "zero_annotation_id", False),
    "id a string": (_set("id", "a7"), "bad_annotation_id", False),
    "id true": (_set("id", True), "bad_annotation_id", False),
    "no id": (_delete("id"), "bad_annotation_id", False),
    "no area": (_delete("area"), "missing_area", True),
    "area true": (_set("area", True), "missing_area", True),
    "area 0": (_set("area", 0), "missing_area", True),
    "no iscrowd": (_delete("iscrowd"), "missing_iscrowd", True),
    "no bbox": (_delete("bbox"), "missing_keys", False),
    "unknown image": (_set("image_id", 424242), "unknown_image", False),
    "unknown category": (_set("category_id", 0), "unknown_category", False),
    "image id a list": (_set("image_id", [1]), "unknown_image", False),
    "category id a string": (_set("category_id", "1"), "unknown_category", False),
    "five numbers": (_box(lambda b, W, H: b + [1]), "bad_bbox", False),
    "a bool in the box": (_box(lambda b, W, H: [b[0], b[1], True, b[3]]), "bad_bbox", False),
    "nan": (_box(lambda b, W, H: [b[0], float("nan"), b[2], b[3]]), "bad_bbox", False),
    "inf": (_box(lambda b, W, H: [b[0], b[1], float("inf"), b[3]]), "bad_bbox", False),
    "negative width": (_box(lambda b, W, H: [b[0], b[1], -2, b[3]]), "negative_size_box", False),
    "zero height": (_box(lambda b, W, H: [b[0], b[1], b[2], 0]), "zero_size_box", False),
    "half a pixel left": (_box(lambda b, W, H: [-0.5, b[1], b[2], b[3]]), "box_slightly_outside", False),
    "one pixel below": (_box(lambda b, W, H: [b[0], H - b[3] + 1, b[2], b[3]]), "box_slightly_outside", False),
    "two pixels right": (_box(lambda b, W, H: [W - b[2] + 2, b[1], b[2], b[3]]), "box_outside", False),
    "beside the image": (_box(lambda b, W, H: [W + 5, b[1], b[2], b[3]]), "box_entirely_outside", False),
}


@pytest.mark.parametrize("quirk", ANNOTATION_QUIRKS)
def test_every_annotation_problem_is_found_in_a_clean_file(tmp_path, dataset, quirk):
    """One bad annotation among clean ones: a whole-file shortcut may not let it through."""
    data, _ = dataset
    change, kind, accepted = ANNOTATION_QUIRKS[quirk]
    a = data["annotations"][4]
    image = next(im for im in data["images"] if im["id"] == a["image_id"])
    change(a, image)
    path = _write(tmp_path, data)
    found = inspect_coco(path).problems
    assert [(p.kind, p.index) for p in found] == [(kind, 4)]
    label = f"annotation {a['id']} (image {a['image_id']})" if "id" in a else f"annotation #4 (image {a['image_id']})"
    assert found[0].id == a.get("id") and found[0].message.startswith(label)
    if accepted:
        load_coco(path)
    else:
        with pytest.raises(SmallboxError, match=re.escape(label)):
            load_coco(path)


def test_inspect_sets_aside_bad_images_with_their_boxes(tmp_path, dataset):
    data, root = dataset
    first, second, third = data["images"]
    (root / first["file_name"]).unlink()
    second["file_name"] = "../elsewhere.png"
    data["images"].append(dict(third, file_name="copy.png"))  # the same id again
    path = _write(tmp_path, data)
    d = inspect_coco(path, root)
    assert [(p.kind, p.id) for p in d.problems] == [("image_not_found", first["id"]), ("bad_file_name", second["id"]),
                                                    ("duplicate_image_id", third["id"])]
    boxes = {im["id"]: sum(a["image_id"] == im["id"] for a in data["annotations"]) for im in (first, second, third)}
    assert d.set_aside["images"] == {"image file not found": 1, "file_name empty, absolute or escaping the image root": 1,
                                     "image id used before in the file": 1}
    assert d.set_aside["annotations"] == {"its image is set aside": boxes[first["id"]] + boxes[second["id"]]}
    assert d.images == [third] and len(d.annotations) == boxes[third["id"]]
    with pytest.raises(SmallboxError) as e:
        load_coco(path, root)
    assert "smallbox fix" not in str(e.value) and "to fix by hand: image file not found (1)" in str(e.value)


SOUND = {"id": 7, "image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0}
VARIANTS = [
    {}, {"id": 0}, {"id": -3}, {"id": True}, {"id": 7.0}, {"id": "7"}, {"id": 5},  # 5 is taken below
    {"image_id": 2}, {"image_id": 1.0}, {"image_id": True}, {"image_id": [1]},
    {"category_id": 9}, {"category_id": 2.0}, {"category_id": False},
    {"bbox": [10, 20, 30]}, {"bbox": (10, 20, 30, 40)}, {"bbox": [10, 20, 30, 40, 1]}, {"bbox": "10,20,30,40"},
    {"bbox": [10, 20, 0, 40]}, {"bbox": [10, 20, -30, 40]}, {"bbox": [10, 20, 30, float("nan")]},
    {"bbox": [float("inf"), 20, 30, 40]}, {"bbox": [-float("inf"), 20, 30, 40]}, {"bbox": [10, 20, True, 40]},
    {"bbox": [10, "20", 30, 40]}, {"bbox": [-1e-7, 20, 30, 40]}, {"bbox": [-0.5, 20, 30, 40]},
    {"bbox": [70, 20, 30, 40]}, {"bbox": [70.0000001, 20, 30, 40]}, {"bbox": [70.5, 20, 30, 40]}, {"bbox": [10, 60, 30, 40]},
    {"bbox": [1e308, 20, 1e308, 40]}, {"area": 0}, {"area": -1}, {"area": float("nan")}, {"area": float("inf")},
    {"area": True}, {"area": "1200"}, {"area": None}, {"iscrowd": 1}, {"iscrowd": None},
    {"area": 10**400}, {"bbox": [0, 0, 10**400, 1]}, {"bbox": [10, 20, 30, -(10**400)]}, {"id": 10**400},
]
GONE = ["id", "image_id", "category_id", "bbox", "area", "iscrowd"]


@pytest.mark.parametrize("change", VARIANTS + [{k: None} for k in GONE], ids=lambda c: repr(c)[:40])
def test_the_one_expression_check_passes_only_what_every_check_passes(change):
    """``_is_sound_annotation`` spares the common case the full checks: it says sound exactly
    where the full checks find nothing, and then records the id as used as they do."""
    from smallbox.datasets.coco import _Checker, _is_sound_annotation

    a = {**SOUND, **change}
    for key, value in change.items():
        if value is None and key in GONE:
            del a[key]
    images, categories = {1: (100, 100)}, {2, 3}
    quick_seen, full_seen = {5: 1}, {5: 1}
    checker = _Checker("ann.json", None, 1.0)
    checker.check_annotation(0, a, images, categories, full_seen, renumber := [])
    full_sound = not checker.problems and not renumber
    assert _is_sound_annotation(a, quick_seen, images, categories) == full_sound
    assert quick_seen == (full_seen if full_sound else {5: 1})  # else untouched: the full checks follow


def test_a_duplicate_image_id_is_judged_as_before_when_the_first_file_is_missing(tmp_path, dataset):
    """The files are read while everything else is checked; where a file disagrees, everything is
    checked again one image at a time, so the outcome is that of checking in file order: an image
    set aside for its file frees its id, and a later entry with that id is the image."""
    data, root = dataset
    first = data["images"][0]
    data["images"].insert(0, {**first, "file_name": "missing.png"})
    found = inspect_coco(_write(tmp_path, data), root)
    assert [(p.kind, p.index) for p in found.problems] == [("image_not_found", 0)]
    assert [im["file_name"] for im in found.images] == [im["file_name"] for im in data["images"][1:]]
    assert len(found.annotations) == len(data["annotations"])


def test_sizes_in_messages_and_repairs_are_the_files_not_the_jsons_floats(tmp_path, dataset):
    data, root = dataset
    image = data["images"][0]
    image["width"], image["height"] = float(image["width"]), float(image["height"])
    box = {"id": 10**6, "image_id": image["id"], "category_id": data["annotations"][0]["category_id"],
           "bbox": [600, 0, 40.5, 10], "area": 405.0, "iscrowd": 0}
    data["annotations"].append(box)
    found = inspect_coco(_write(tmp_path, data), root)
    (problem,) = found.problems
    assert "outside the 640x640 image by 0.5 px" in problem.message
    assert problem.change == {"bbox": [600, 0, 40, 10], "area": 400}
    assert [type(v) for v in problem.change["bbox"]] == [int] * 4
