"""Test data that exposes id, size and class mistakes: real DeepPCB images and boxes, made awkward.

- non-square images: cropped to 640x480 (landscape), or cropped and turned 90 degrees to 480x640
  (portrait), the boxes transformed with them; a width/height swap anywhere shows;
- category ids neither contiguous nor starting at 1 (3, 7, 12, 40, 41, 99), so ``label`` vs
  ``category_id`` and 0- vs 1-based slips show;
- large, scattered image and annotation ids;
- file names in sub-folders (``line-a/``, ``line-b/``).

Written once per test session by ``conftest.odd_deeppcb``; the transforms are plain PIL and
arithmetic, independent of smallbox.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

CATEGORY_IDS = {1: 3, 2: 7, 3: 12, 4: 40, 5: 41, 6: 99}  # DeepPCB id -> odd id
CROP_HEIGHT = 480  # landscape crop: the top 640x480 of a 640x640 scan


def odd_image_id(original: int) -> int:
    return 1_000_003 + 97 * original


def _transform(image: Image.Image, anns: list[dict], portrait: bool):
    """Crop to the top 640x480; for ``portrait`` also turn 90 degrees clockwise (480x640).
    Boxes crossing the crop line are dropped (their object is cut)."""
    width = image.width
    image = image.crop((0, 0, width, CROP_HEIGHT))
    kept = [a for a in anns if a["bbox"][1] + a["bbox"][3] <= CROP_HEIGHT]
    boxes = [list(a["bbox"]) for a in kept]
    if portrait:
        image = image.transpose(Image.Transpose.ROTATE_270)  # clockwise
        # (x, y) of the landscape image goes to (H - y, x): a box [x, y, w, h] -> [H - y - h, x, h, w]
        boxes = [[CROP_HEIGHT - y - h, x, h, w] for x, y, w, h in boxes]
    return image, kept, boxes


def make_odd_deeppcb(source_json: Path, images_dir: Path, out: Path, n_images: int, offset: int = 0) -> Path:
    """Write ``out/images/line-{a,b}/*.png`` and ``out/<name>.json`` from ``n_images`` images of a
    DeepPCB json (from ``offset``); every second image is portrait. Returns the json path."""
    src = json.loads(Path(source_json).read_text())
    chosen = src["images"][offset:offset + n_images]
    by_image = {}
    for a in src["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images, annotations = [], []
    for k, im in enumerate(chosen):
        portrait = k % 2 == 1
        folder = "line-b" if portrait else "line-a"
        with Image.open(Path(images_dir) / im["file_name"]) as pic:
            pic, kept, boxes = _transform(pic.convert("L"), by_image.get(im["id"], []), portrait)
        file_name = f"{folder}/{Path(im['file_name']).stem}.png"
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        pic.save(out / "images" / file_name)
        image_id = odd_image_id(im["id"])
        images.append({"id": image_id, "file_name": file_name, "width": pic.width, "height": pic.height})
        for a, box in zip(kept, boxes):
            annotations.append({"id": 5_000_011 + 13 * a["id"], "image_id": image_id,
                                "category_id": CATEGORY_IDS[a["category_id"]], "bbox": box,
                                "area": float(box[2] * box[3]), "iscrowd": 0})
    categories = [{"id": CATEGORY_IDS[c["id"]], "name": c["name"], "supercategory": c.get("supercategory", "")}
                  for c in src["categories"]]
    path = out / f"{Path(source_json).stem}-odd.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


BCCD_CATEGORY_IDS = {1: 7, 2: 40, 3: 99}  # RBC, WBC, Platelets -> odd ids


def make_odd_bccd(source_json: Path, images_dir: Path, out: Path, n_images: int) -> Path:
    """``n_images`` BCCD photos (640x480, large cells: a tiny model learns them in a few steps)
    as ``out/images/cells/*.png`` and ``out/bccd-odd.json``: every second one turned 90 degrees
    clockwise (480x640), category ids 7, 40, 99, large scattered image and annotation ids."""
    src = json.loads(Path(source_json).read_text())
    (out / "images" / "cells").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k, im in enumerate(src["images"][:n_images]):
        anns = [a for a in src["annotations"] if a["image_id"] == im["id"]]
        boxes = [list(a["bbox"]) for a in anns]
        with Image.open(Path(images_dir) / im["file_name"]) as pic:
            pic = pic.convert("RGB")
            if k % 2 == 1:
                boxes = [[pic.height - y - h, x, h, w] for x, y, w, h in boxes]  # as in _transform
                pic = pic.transpose(Image.Transpose.ROTATE_270)
            file_name = f"cells/{Path(im['file_name']).stem}.png"
            pic.save(out / "images" / file_name)
        image_id = 2_000_029 + 7919 * k
        images.append({"id": image_id, "file_name": file_name, "width": pic.width, "height": pic.height})
        for a, box in zip(anns, boxes):
            annotations.append({"id": 9_000_017 + 31 * a["id"], "image_id": image_id,
                                "category_id": BCCD_CATEGORY_IDS[a["category_id"]], "bbox": box,
                                "area": float(box[2] * box[3]), "iscrowd": 0})
    categories = [{"id": BCCD_CATEGORY_IDS[c["id"]], "name": c["name"]} for c in src["categories"]]
    path = out / "bccd-odd.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
