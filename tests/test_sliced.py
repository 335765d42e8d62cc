"""Sliced inference: SAHI's tiles, SAHI's merges, and boxes mapped back from the tiles exactly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from smallbox.adapters.predict_fn import load_predict_fn
from smallbox.fusion.sliced import merge_predictions, predict_sliced, slice_windows
from smallbox.cli import main

import sahi  # noqa: E402,F401  (the reference: a missing one fails the suite, never skips it)
import torch  # noqa: E402
torch.set_num_threads(1)  # small models: threads only contend on a shared CPU


@pytest.mark.parametrize("width,height,tile,overlap", [(640, 640, 320, 0.0), (640, 640, 320, 0.2), (1000, 700, 256, 0.25),
                                                       (300, 200, 512, 0.2), (641, 333, 160, 0.5),
                                                       # overlap x tile with a fraction above .5 and below: 76.8, 51.2,
                                                       # 97.65, 38.4, on non-square, odd-sized images
                                                       (1280, 721, 512, 0.15), (999, 1001, 256, 0.2), (777, 555, 315, 0.31),
                                                       (1023, 513, 256, 0.15), (640, 480, 192, 0.33)])
def test_windows_are_sahis(width, height, tile, overlap):
    from sahi.slicing import get_slice_bboxes

    want = get_slice_bboxes(height, width, tile, tile, overlap_height_ratio=overlap, overlap_width_ratio=overlap)
    assert slice_windows(width, height, tile, overlap).tolist() == want


def _real_boxes(deeppcb_predictions, n_images=3):
    """Real detections of a few DeepPCB images, plus shifted copies, as a sliced run gives them."""
    preds = json.load(gzip.open(deeppcb_predictions[0], "rt"))
    ids = sorted({p["image_id"] for p in preds})[:n_images]
    rng = np.random.default_rng(0)
    for image_id in ids:
        ps = [p for p in preds if p["image_id"] == image_id]
        b = np.array([p["bbox"] for p in ps], dtype=float)
        b[:, 2:] += b[:, :2]
        s = np.array([p["score"] for p in ps])
        lab = np.array([p["category_id"] for p in ps])
        jitter = np.clip(b + rng.normal(0, 3, b.shape), 0, None)  # SAHI clips boxes at 0
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        yield (np.concatenate([b, jitter]), np.concatenate([s, s * rng.uniform(0.5, 1, len(s))]),
               np.concatenate([lab, lab]))


@pytest.mark.parametrize("merge,metric,thr", [("greedy", "ios", 0.5), ("greedy", "iou", 0.3), ("nms", "ios", 0.5),
                                              ("nms", "iou", 0.5)])
def test_merge_equals_sahi_postprocess(deeppcb_predictions, merge, metric, thr):
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    cls = GreedyNMMPostprocess if merge == "greedy" else NMSPostprocess
    post = cls(match_threshold=thr, match_metric=metric.upper(), class_agnostic=False)
    for boxes, scores, labels in _real_boxes(deeppcb_predictions):
        objs = [ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(c), score=float(s),
                                 full_shape=[2000, 2000]) for b, s, c in zip(boxes, scores, labels)]
        theirs = post(objs)
        want = np.array(sorted((-o.score.value, o.category.id, *o.bbox.to_xyxy()) for o in theirs))
        b, s, lab = merge_predictions(boxes, scores, labels, merge, metric, thr)
        got = np.array(sorted(zip(-s, lab, *b.T)))
        assert len(got) < len(boxes)
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("merge,metric", [("greedy", "ios"), ("greedy", "iou"), ("nms", "ios"), ("nms", "iou")])
def test_boxes_exactly_at_the_match_threshold_merge_as_sahi_merges_them(deeppcb_predictions, merge, metric):
    """Each real box beside a copy of it with the width doubled (integer pixels): IoU and IoS exactly
    0.5 and 1.0, at --match-thr 0.5 and 1.0. Which side of the threshold "equal" falls on is SAHI's."""
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    cls = GreedyNMMPostprocess if merge == "greedy" else NMSPostprocess
    for boxes, scores, labels in _real_boxes(deeppcb_predictions, n_images=2):
        b = np.round(boxes[: len(boxes) // 2])
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        wide = b.copy()
        wide[:, 2] += wide[:, 2] - wide[:, 0]  # IoU 0.5, IoS 1.0 with its box
        s, lab = scores[: len(b)], labels[: len(b)]
        both, both_s, both_l = np.concatenate([b, wide]), np.concatenate([s, s * 0.9]), np.concatenate([lab, lab])
        for thr in (0.5, 1.0):
            post = cls(match_threshold=thr, match_metric=metric.upper(), class_agnostic=False)
            objs = [ObjectPrediction(bbox=x.tolist(), category_id=int(c), category_name=str(c), score=float(v),
                                     full_shape=[4000, 4000]) for x, v, c in zip(both, both_s, both_l)]
            want = np.array(sorted((-o.score.value, o.category.id, *o.bbox.to_xyxy()) for o in post(objs)))
            got_b, got_s, got_l = merge_predictions(both, both_s, both_l, merge, metric, thr)
            got = np.array(sorted(zip(-got_s, got_l, *got_b.T)))
            np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_yolo_fn(tmp_path_factory):
    """A deterministic random-init tiny YOLO (6 classes) as a predict_fn, and the model itself."""
    import torch

    from smallbox.offline import apply_offline_defaults

    apply_offline_defaults()
    from ultralytics import YOLO

    torch.manual_seed(0)
    yaml_path = tmp_path_factory.mktemp("model") / "tiny6.yaml"
    text = open("recipes/models/yolo-tiny.yaml").read().replace("nc: 80", "nc: 6")
    yaml_path.write_text(text)
    model = YOLO(str(yaml_path), task="detect")

    def predict(image_bgr):
        r = model.predict(image_bgr, imgsz=320, conf=1e-4, iou=0.7, device="cpu", verbose=False)[0]
        return r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)

    return predict, model


def test_tiled_into_4_finds_the_boxes_of_each_tile(tiny_yolo_fn, deeppcb_images):
    """640x640 image, 320 px tiles, no overlap: the 4 quadrants. With nothing merged, the sliced
    result is exactly the union of direct predictions on each quadrant, shifted by its corner."""
    predict, model = tiny_yolo_fn
    image = cv2.imread(str(sorted(deeppcb_images.glob("*.png"))[0]), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (640, 640)
    assert slice_windows(640, 640, 320, 0.0).tolist() == [[0, 0, 320, 320], [320, 0, 640, 320],
                                                        [0, 320, 320, 640], [320, 320, 640, 640]]
    boxes, scores, labels = predict_sliced(image, predict, tile=320, overlap=0.0, full=False, merge="nms",
                                           metric="iou", threshold=1.01)
    want = []
    for x0, y0 in ((0, 0), (320, 0), (0, 320), (320, 320)):
        crop = np.ascontiguousarray(image[y0:y0 + 320, x0:x0 + 320])
        r = model.predict(crop, imgsz=320, conf=1e-4, iou=0.7, device="cpu", verbose=False)[0]
        b = r.boxes.xyxy.numpy().astype(float) + [x0, y0, x0, y0]
        want += [(round(float(s), 6), int(c), *np.round(bb, 3)) for bb, s, c in zip(b, r.boxes.conf.numpy(), r.boxes.cls.numpy())]
        assert len(b) and (b[:, [0, 2]] >= x0 - 1e-3).all() and (b[:, [1, 3]] <= y0 + 320 + 1e-3).all()
    got = [(round(float(s), 6), int(c), *np.round(bb, 3)) for bb, s, c in zip(boxes, scores, labels)]
    assert sorted(got) == sorted(want)
    # Merging them (SAHI's default, greedy IoS 0.5) leaves fewer boxes.
    merged = merge_predictions(boxes, scores, labels)
    assert 0 < len(merged[0]) < len(boxes)


def test_cli_slice_writes_original_ids(tmp_path, deeppcb_val, deeppcb_images):
    gt = json.loads(deeppcb_val.read_text())
    images = gt["images"][:2]
    keep = {im["id"] for im in images}
    sub = dict(gt, images=images, annotations=[a for a in gt["annotations"] if a["image_id"] in keep])
    (tmp_path / "gt.json").write_text(json.dumps(sub))
    model = tmp_path / "tiny6.yaml"
    model.write_text(open("recipes/models/yolo-tiny.yaml").read().replace("nc: 80", "nc: 6"))
    out = tmp_path / "sliced.json"
    assert main(["slice", str(model), "--images", str(deeppcb_images), "--gt", str(tmp_path / "gt.json"),
                 "--out", str(out), "--tile", "320", "--imgsz", "160", "--conf", "0.0001", "--device", "cpu"]) == 0
    preds = json.loads(out.read_text())
    assert preds and {p["image_id"] for p in preds} <= keep
    assert {p["category_id"] for p in preds} <= {c["id"] for c in gt["categories"]}
    assert all(0 <= p["bbox"][0] and p["bbox"][0] + p["bbox"][2] <= 640 + 1e-3 for p in preds)


def test_cli_slice_missing_model_is_a_clean_error(tmp_path, capsys, deeppcb_images):
    code = main(["slice", str(tmp_path / "nope.pt"), "--images", str(deeppcb_images), "--out", str(tmp_path / "o.json")])
    assert code == 2 and "no such" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("shape", ["640x640", "640x480", "480x640"])
def test_same_result_as_sahi_get_sliced_prediction(tmp_path, deeppcb_images, shape):
    """The whole pipeline (tiles + whole image, greedy IoS 0.5) against SAHI's own, on a saved
    random-init tiny YOLO and a real DeepPCB image, whole or cropped to its top 640x480 (turned to
    480x640 as well: tiles and clipping by width and by height)."""
    import torch

    from smallbox.offline import apply_offline_defaults

    apply_offline_defaults()
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction
    from ultralytics import YOLO

    torch.manual_seed(0)
    (tmp_path / "tiny6.yaml").write_text(open("recipes/models/yolo-tiny.yaml").read().replace("nc: 80", "nc: 6"))
    YOLO(str(tmp_path / "tiny6.yaml")).save(str(tmp_path / "tiny6.pt"))
    image = cv2.imread(str(sorted(deeppcb_images.glob("*.png"))[1]), cv2.IMREAD_COLOR)
    if shape != "640x640":
        image = image[:480] if shape == "640x480" else np.ascontiguousarray(np.rot90(image[:480], -1))
    assert "x".join(map(str, image.shape[1::-1])) == shape
    # SAHI runs the whole image at the tiles' size; smallbox's default is the training size (below)
    fn = load_predict_fn(tmp_path / "tiny6.pt", conf=0.0005, imgsz=320, device="cpu", full_imgsz=320)
    boxes, scores, labels = predict_sliced(image, fn, tile=320, overlap=0.2)
    model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(tmp_path / "tiny6.pt"),
                                               confidence_threshold=0.0005, device="cpu", image_size=320)
    # force: SAHI silently switches to NMS/IoU below a model confidence of 0.1 otherwise.
    theirs = get_sliced_prediction(image[..., ::-1].copy(), model, 320, 320, 0.2, 0.2, verbose=0,
                                   force_postprocess_type=True).object_prediction_list
    want = sorted((-o.score.value, o.category.id, *o.bbox.to_xyxy()) for o in theirs)
    got = sorted(zip(-scores, labels, *boxes.T))
    assert len(got) > 1
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float), atol=1e-4)


def test_tv_checkpoint_tiled_into_4_finds_the_boxes_of_each_tile(tmp_path, deeppcb_images):
    """The same for a `smallbox tv` checkpoint (tiny random-init Faster R-CNN): load_predict_fn
    recognises it, and the sliced boxes are the direct per-quadrant predictions, shifted."""
    import copy

    import torch

    from smallbox.adapters.tv.models import anchor_sizes_of, build_model
    from smallbox.adapters.tv.recipe import DEFAULTS

    torch.manual_seed(0)
    settings = copy.deepcopy(DEFAULTS["model"])
    settings.update(backbone="resnet18", min_size=128, max_size=128, fpn_channels=32, rpn_pre_nms_top_n_test=100,
                    rpn_post_nms_top_n_test=50, score_thresh=0.0)
    model = build_model(settings, 6, read_weights=False).eval()
    settings["anchor_sizes"] = anchor_sizes_of(model)  # recorded, as the trainer records them
    ckpt = {"recipe": {"model": settings}, "model": model.state_dict(),
            "classes": [{"category_id": i + 1, "name": str(i)} for i in range(6)]}
    torch.save(ckpt, tmp_path / "tv.pt")
    fn = load_predict_fn(tmp_path / "tv.pt", conf=0.0, device="cpu")
    image = cv2.imread(str(sorted(deeppcb_images.glob("*.png"))[0]), cv2.IMREAD_COLOR)
    boxes, scores, labels = predict_sliced(image, fn, tile=320, overlap=0.0, full=False, merge="nms",
                                           metric="iou", threshold=1.01)
    want = []
    with torch.inference_mode():
        for x0, y0 in ((0, 0), (320, 0), (0, 320), (320, 320)):
            rgb = np.ascontiguousarray(image[y0:y0 + 320, x0:x0 + 320, ::-1])
            out = model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
            b = out["boxes"].double().numpy() + [x0, y0, x0, y0]
            want += [(round(float(s), 5), int(c) - 1, *np.round(bb, 2)) for bb, s, c in
                     zip(b, out["scores"].numpy(), out["labels"].numpy())]
    got = [(round(float(s), 5), int(c), *np.round(bb, 2)) for bb, s, c in zip(boxes, scores, labels)]
    assert want and sorted(got) == sorted(want)


BCCD = Path(__file__).resolve().parents[1] / "data" / "bccd"
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "models" / "yolov8n-deeppcb-320.pt"


def test_whole_image_pass_runs_at_the_training_size_not_the_tiles(deeppcb_images):
    """The bundled YOLOv8n was trained at 320: sliced inference's whole-image pass is exactly
    `predict` at 320 whatever the tiles' size."""
    from ultralytics import YOLO

    image = cv2.imread(str(sorted(deeppcb_images.glob("*.png"))[0]), cv2.IMREAD_COLOR)
    fn = load_predict_fn(BUNDLED, conf=0.001, imgsz=512, device="cpu")
    assert fn.trained_imgsz == 320
    boxes, scores, labels = fn.full(image)
    want = YOLO(str(BUNDLED)).predict(image, imgsz=320, conf=0.001, device="cpu", verbose=False)[0].boxes
    assert len(boxes) > 0 and np.array_equal(boxes, want.xyxy.numpy()) and np.array_equal(scores, want.conf.numpy())
    tile_boxes = fn(image)[0]
    assert len(tile_boxes) != len(boxes) or not np.array_equal(tile_boxes, boxes)  # tiles: another size


def test_tiles_are_shown_at_most_upscale_times_the_training_scale():
    from smallbox.fusion.sliced import tile_input_size

    # a 640 px image seen at 320 in training: 512 px tiles at 1.5x that scale -> 384
    assert tile_input_size((640, 640), 512, 320, 1.5) == 384
    # a model trained at the image's own size: tiles at full resolution, never above the tile size
    assert tile_input_size((640, 480), 512, 640, 1.5) == 512
    assert tile_input_size((2048, 1024), 512, 1024, 1.0) == 256


def test_a_fragment_cut_by_an_inner_tile_edge_never_survives_beside_its_whole_box():
    """A stub model: the whole image holds one object [240, 100, 520, 200]; the left 320 px tile
    sees only its cut-off part [240, 100, 320, 200] (IoU 0.286 with the whole box), scored as high.
    NMS by IoU 0.5 keeps both; the edge merge drops the fragment whatever the scores."""
    from smallbox.fusion.overlap import iou_xyxy

    image = np.zeros((320, 640, 3), np.uint8)
    whole_box, fragment = [240.0, 100.0, 520.0, 200.0], [240.0, 100.0, 320.0, 200.0]
    none = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))

    def stub(pixels):
        if pixels.shape[1] == 640:  # the whole image
            return np.array([whole_box]), np.array([0.8]), np.array([2])
        left_tile = pixels[0, 0, 0] == 1  # marked below
        return (np.array([fragment]), np.array([0.8]), np.array([2])) if left_tile else none

    image[:, :320] = 1
    assert float(iou_xyxy(np.array(fragment), np.array(whole_box))) == pytest.approx(8000 / 28000)
    for merge, want in (("nms", 2), ("edge", 1)):
        boxes, _, _ = predict_sliced(image, stub, tile=320, overlap=0.0, full=True, merge=merge, metric="iou",
                                     threshold=0.5)
        assert len(boxes) == want, merge
    assert boxes[0].tolist() == whole_box  # the edge merge kept the whole box, with tied scores


def test_on_real_images_no_fragment_survives_the_edge_merge(deeppcb_images):
    """The bundled model on DeepPCB val images, 320 px tiles of the 640 px images: tile boxes cut by
    an inner tile edge that lie half inside an uncut box of their class survive NMS by IoU (the
    old default) but never the edge merge."""
    from smallbox.fusion.overlap import ios_xyxy
    from smallbox.fusion.sliced import cut_by_inner_edge

    fn = load_predict_fn(BUNDLED, conf=0.001, imgsz=192, device="cpu")
    cut_boxes = []

    def recording(pixels):
        out = fn(pixels)
        cut_boxes.append(out)
        return out

    val = json.loads((deeppcb_images.parent / "annotations" / "val.json").read_text())["images"][:6]
    survivors = {"nms": 0, "edge": 0}
    for im in val:
        image = cv2.imread(str(deeppcb_images / im["file_name"]), cv2.IMREAD_COLOR)
        windows = slice_windows(640, 640, 320, 0.2).tolist()
        for merge in survivors:
            boxes, scores, labels = predict_sliced(image, fn, tile=320, overlap=0.2, full=True, merge=merge,
                                                   metric="iou", threshold=0.5, whole=fn.full(image))
            # a kept box that is exactly a tile's cut box, half inside another kept box of its class
            tile_cut = np.zeros(len(boxes), bool)
            for x0, y0, x1, y1 in windows:
                b, _, _ = fn(np.ascontiguousarray(image[y0:y1, x0:x1]))
                shifted = np.asarray(b, float) + [x0, y0, x0, y0]
                flags = cut_by_inner_edge(shifted, (x0, y0, x1, y1), 640, 640)
                for cb in shifted[flags]:
                    tile_cut |= np.isclose(boxes, cb, atol=1e-4).all(axis=1)
            for i in np.flatnonzero(tile_cut):
                others = (labels == labels[i]) & ~tile_cut
                if others.any() and (ios_xyxy(boxes[i][None], boxes[others]) >= 0.5).any():
                    survivors[merge] += 1
    assert survivors["nms"] > 0 and survivors["edge"] == 0, survivors


def test_colour_tiles_reach_a_torchvision_model_as_rgb(tmp_path):
    """A BCCD colour photo through a tv predict_fn (BGR as OpenCV reads it) against the model run
    on the image as PIL loads it (RGB), without smallbox's conversion: the same boxes. On DeepPCB
    (grey) dropping the BGR -> RGB flip would change nothing."""
    import copy

    import torch
    from PIL import Image

    from smallbox.adapters.tv.models import anchor_sizes_of, build_model
    from smallbox.adapters.tv.recipe import DEFAULTS

    torch.manual_seed(0)
    settings = copy.deepcopy(DEFAULTS["model"])
    settings.update(backbone="resnet18", min_size=128, max_size=128, fpn_channels=32, rpn_pre_nms_top_n_test=100,
                    rpn_post_nms_top_n_test=50, score_thresh=0.0)
    model = build_model(settings, 3, read_weights=False).eval()
    settings["anchor_sizes"] = anchor_sizes_of(model)  # recorded, as the trainer records them
    torch.save({"recipe": {"model": settings}, "model": model.state_dict(),
                "classes": [{"category_id": i + 1, "name": str(i)} for i in range(3)]}, tmp_path / "tv.pt")
    fn = load_predict_fn(tmp_path / "tv.pt", conf=0.0, device="cpu")
    path = sorted((BCCD / "images").iterdir())[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).mean() > 5  # really colour: red and blue differ
    with torch.inference_mode():
        want = model([torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255])[0]
    boxes, scores, _ = fn(cv2.imread(str(path), cv2.IMREAD_COLOR))
    keep = want["labels"] > 0
    assert len(scores) == int(keep.sum()) > 0
    assert np.allclose(boxes, want["boxes"][keep].double().numpy(), atol=1e-3)
    assert np.allclose(scores, want["scores"][keep].numpy(), atol=1e-5)


def test_slice_eval_whole_image_row_is_what_predict_and_eval_give(tmp_path, deeppcb_val, capsys, monkeypatch):
    """The demo printed AP_small 0.392 for `predict` (max_det=100) and 0.393 for slice's "whole image
    alone" (Ultralytics' max_det=300). With predict's defaults the two rows are one number: the
    printed row equals `smallbox yolo predict` + `smallbox eval` on the same images."""
    import shutil

    gt = json.loads(deeppcb_val.read_text())
    images = gt["images"][5:11]
    keep = {im["id"] for im in images}
    (tmp_path / "gt.json").write_text(json.dumps(dict(gt, images=images, annotations=[
        a for a in gt["annotations"] if a["image_id"] in keep])))
    folder = tmp_path / "images"
    folder.mkdir()
    for im in images:
        shutil.copy(deeppcb_val.parent.parent / "images" / im["file_name"], folder / im["file_name"])
    assert main(["slice", str(BUNDLED), "--images", str(folder), "--gt", str(tmp_path / "gt.json"), "--out",
                 str(tmp_path / "sliced.json"), "--device", "cpu", "--eval"]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("whole image alone"))
    monkeypatch.setenv("SMALLBOX_IMAGE_IDS", str(tmp_path / "gt.json"))  # the json's ids, as slice's --gt
    assert main(["yolo", "predict", f"model={BUNDLED}", f"source={folder}", "imgsz=320", "conf=0.001", "device=cpu",
                 "save=False", "verbose=False", f"project={tmp_path}", "name=predict"]) == 0
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "predict" / "predictions.json"),
                 "--json", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert row.split()[3:7] == [f"{m[k]:.3f}" for k in ("AP", "AP50", "AP_small", "AP_medium")] and m["AP_small"] > 0.3
