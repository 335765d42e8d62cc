"""Colour images through smallbox's own image paths (issue 23): DeepPCB is grey (its three channels
are equal), so a lost BGR<->RGB flip changes nothing there. The bundled BCCD blood-cell photos are
colour; each path is checked against a reference that loads the image on its own (PIL, RGB), never
one that repeats the code's own conversion. The images are saved as PNG first: OpenCV's and PIL's
JPEG decoders may differ by a grey level, PNG decodes identically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smallbox.cli import main

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT / "data" / "bccd"
BUNDLED = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    """Three BCCD photos as PNG and their json (file names changed to .png)."""
    root = tmp_path_factory.mktemp("colour")
    (root / "images").mkdir()
    gt = json.loads((BCCD / "annotations" / "val.json").read_text())
    gt["images"] = gt["images"][:3]
    keep = {im["id"] for im in gt["images"]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    for im in gt["images"]:
        png = Path(im["file_name"]).with_suffix(".png").name
        Image.open(BCCD / "images" / im["file_name"]).convert("RGB").save(root / "images" / png)
        im["file_name"] = png
    (root / "gt.json").write_text(json.dumps(gt))
    rgb = np.asarray(Image.open(root / "images" / gt["images"][0]["file_name"]).convert("RGB"))
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).mean() > 10  # really colour: red and blue differ
    return {"root": root, "images": root / "images", "gt": root / "gt.json", "data": gt}


def test_yolo_predict_of_colour_files_equals_ultralytics_on_the_rgb_image(colour, tmp_path, monkeypatch):
    """`smallbox yolo predict` reads the files; the reference hands Ultralytics each image as a PIL
    RGB image (which it flips to BGR itself). The boxes and scores are the same."""
    from ultralytics import YOLO

    monkeypatch.setenv("SMALLBOX_IMAGE_IDS", str(colour["gt"]))
    assert main(["yolo", "predict", f"model={BUNDLED}", f"source={colour['images']}", "imgsz=320", "conf=0.01",
                 "device=cpu", "save=False", "verbose=False", f"project={tmp_path}", "name=p"]) == 0
    ours = json.loads((tmp_path / "p" / "predictions.json").read_text())
    model = YOLO(str(BUNDLED))
    for im in colour["data"]["images"]:
        rgb = Image.open(colour["images"] / im["file_name"]).convert("RGB")
        r = model.predict(rgb, imgsz=320, conf=0.01, device="cpu", verbose=False)[0].boxes
        want = sorted((round(float(s), 5), *np.round([x0, y0, x1 - x0, y1 - y0], 2))
                      for (x0, y0, x1, y1), s in zip(r.xyxy.numpy().tolist(), r.conf.numpy().tolist()))
        got = sorted((p["score"], *p["bbox"]) for p in ours if p["image_id"] == im["id"])
        assert want and len(got) == len(want)
        assert np.allclose(np.array(got, dtype=float), np.array(want, dtype=float), atol=0.011)


def test_slice_of_colour_files_sees_what_ultralytics_sees(colour, tmp_path):
    """`slice --full always` with one tile covering the image: its whole-image pass is the model on
    the file, which must equal Ultralytics on the PIL RGB image (the tile pass differs in size)."""
    from ultralytics import YOLO

    from smallbox.adapters.predict_fn import load_predict_fn

    fn = load_predict_fn(BUNDLED, conf=0.01, imgsz=320, device="cpu")
    import cv2

    model = YOLO(str(BUNDLED))
    for im in colour["data"]["images"][:2]:
        path = colour["images"] / im["file_name"]
        boxes, scores, _ = fn.full(cv2.imread(str(path), cv2.IMREAD_COLOR))
        r = model.predict(Image.open(path).convert("RGB"), imgsz=320, conf=0.01, device="cpu", verbose=False)[0].boxes
        assert len(boxes) and np.allclose(boxes, r.xyxy.numpy(), atol=1e-3) and np.allclose(scores, r.conf.numpy(), atol=1e-5)


def test_compare_crops_show_the_photo_in_its_colours(colour, tmp_path):
    """A box only B finds: its crop tile's middle (inside the box, away from the drawn outlines)
    holds one of the photo's own RGB pixels there, as OpenCV reads the file and flips it (an
    independent loader); with red and blue swapped no pixel nearby would match."""
    import cv2

    gt = colour["data"]
    a = gt["annotations"][0]
    truth = [{"image_id": x["image_id"], "category_id": x["category_id"], "bbox": x["bbox"], "score": 0.9}
             for x in gt["annotations"]]
    (tmp_path / "a.json").write_text(json.dumps([p for p in truth if p["bbox"] != a["bbox"]]))
    (tmp_path / "b.json").write_text(json.dumps(truth))
    out = tmp_path / "cmp"
    assert main(["compare", str(colour["gt"]), str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--images",
                 str(colour["images"]), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    entry = next(e for e in summary["b_only"] if e["gt_bbox"] == a["bbox"])
    tile = np.asarray(Image.open(out / entry["crop"]).convert("RGB"))
    image_name = next(im["file_name"] for im in gt["images"] if im["id"] == a["image_id"])
    photo = cv2.imread(str(colour["images"] / image_name), cv2.IMREAD_COLOR)[..., ::-1]
    x, y, w, h = a["bbox"]
    side = max(64.0, 3 * max(w, h))
    x0, y0 = max(0.0, x + w / 2 - side / 2), max(0.0, y + h / 2 - side / 2)
    x1, y1 = min(photo.shape[1], x + w / 2 + side / 2), min(photo.shape[0], y + h / 2 + side / 2)
    scale = tile.shape[1] / max(x1 - x0, y1 - y0)  # the tile is square above its caption
    cx, cy = int(x + w / 2), int(y + h / 2)
    px, py = int((cx - int(x0)) * scale), int((cy - int(y0)) * scale)
    around = photo[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).astype(int)  # the tile's nearest-pixel resize rounds
    assert (np.abs(around - tile[py, px]).max(axis=1) <= 1).any(), (tile[py, px], photo[cy, cx])
