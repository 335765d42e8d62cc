"""Models that leave smallbox as exports: ONNX exports of the CSP (the bundled YOLOv8n), P2 and
Swin recipes run in ONNX Runtime give PyTorch's outputs at the export size and, when dynamic, at
two other sizes (one non-square), on real images; a dynamic Swin export is refused (it would be
wrong); TorchScript matches at its size; a missing onnx package is a clean error; an exported model
predicts and slices through smallbox with the original ids and smallbox's metadata, and scores
what the checkpoint scores (AP_small within 0.002, whole and sliced)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from yolo_helpers import DEEPPCB, ROOT

from smallbox.cli import main

BUNDLED = ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt"
VAL = json.loads((DEEPPCB / "annotations" / "val.json").read_text())["images"]


def checkpoint_of(yaml_name: str, folder) -> "Path":  # noqa: F821
    """A random-init checkpoint of a recipe (6 classes), as a file exports start from."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    from smallbox.adapters.yolo.model import SmallboxDetectionModel

    torch.manual_seed(0)
    model = SmallboxDetectionModel(str(ROOT / "recipes" / "models" / yaml_name), nc=6, verbose=False).eval()
    model.names = {i: f"c{i}" for i in range(6)}
    model.args = dict(DEFAULT_CFG_DICT)
    path = folder / f"{yaml_name.split('.')[0]}.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 160}}, path)
    return path


def export(weights, tmp_path, **kwargs):
    from ultralytics import YOLO

    from smallbox.adapters.yolo.register import register

    register()
    return YOLO(str(weights)).export(device="cpu", **kwargs)


def letterboxed(h: int, w: int, k: int = 0) -> torch.Tensor:
    """A real image, letterboxed to (h, w) as Ultralytics feeds it (RGB, 0-1)."""
    from ultralytics.data.augment import LetterBox

    image = cv2.imread(str(DEEPPCB / "images" / VAL[k]["file_name"]))
    boxed = LetterBox((h, w), auto=False)(image=image)
    return torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))).float()[None] / 255


def pytorch_output(weights, x):
    from ultralytics.nn.tasks import load_checkpoint

    model = load_checkpoint(weights)[0].float().eval()
    with torch.no_grad():
        out = model(x)
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def onnx_output(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("recipe, size, dynamic, others", [
    (None, 320, False, []),                              # the bundled CSP YOLOv8n, trained
    (None, 320, True, [(416, 416), (256, 384)]),
    ("p2-yolov8n.yaml", 160, False, []),
    ("p2-yolov8n.yaml", 160, True, [(224, 224), (160, 256)]),
    ("swin-tiny-test-yolo.yaml", 224, False, []),
])
def test_onnx_runtime_gives_pytorchs_outputs(tmp_path, recipe, size, dynamic, others):
    weights = BUNDLED if recipe is None else checkpoint_of(recipe, tmp_path)
    if recipe is None:
        weights = tmp_path / BUNDLED.name
        weights.write_bytes(BUNDLED.read_bytes())
    path = export(weights, tmp_path, format="onnx", imgsz=size, dynamic=dynamic, simplify=False)
    for h, w in [(size, size), *others]:
        x = letterboxed(h, w, k=h % 7)
        theirs, ours = onnx_output(path, x), pytorch_output(weights, x)
        assert theirs.shape == ours.shape  # all anchors of this size: the whole image is searched
        assert np.abs(theirs[:, :4] - ours[:, :4]).max() < 1e-3  # boxes, px
        assert np.abs(theirs[:, 4:] - ours[:, 4:]).max() < 1e-4  # class scores


def test_a_dynamic_swin_export_is_refused(tmp_path, capsys):
    weights = checkpoint_of("swin-tiny-test-yolo.yaml", tmp_path)
    rc = main(["yolo", "export", f"model={weights}", "format=onnx", "imgsz=224", "dynamic=True", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "dynamic=True with a Swin backbone" in err and "Traceback" not in err
    assert not weights.with_suffix(".onnx").exists()


def test_torchscript_gives_pytorchs_outputs(tmp_path):
    weights = tmp_path / BUNDLED.name
    weights.write_bytes(BUNDLED.read_bytes())
    path = export(weights, tmp_path, format="torchscript", imgsz=320)
    x = letterboxed(320, 320)
    with torch.no_grad():
        theirs = torch.jit.load(path)(x)
    theirs = (theirs[0] if isinstance(theirs, (list, tuple)) else theirs).numpy()
    assert np.abs(theirs - pytorch_output(weights, x)).max() < 1e-3


def test_export_without_onnx_is_a_clean_error(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    weights = tmp_path / BUNDLED.name
    weights.write_bytes(BUNDLED.read_bytes())
    rc = main(["yolo", "export", f"model={weights}", "format=onnx"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'smallbox[export]'" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    weights = folder / BUNDLED.name
    weights.write_bytes(BUNDLED.read_bytes())
    return {"pt": weights, "onnx": export(weights, folder, format="onnx", imgsz=320, dynamic=True, simplify=False),
            "folder": folder}


def test_an_export_carries_smallboxs_metadata(exported):
    from smallbox.adapters.yolo.metadata import read_metadata

    meta = read_metadata(exported["onnx"])
    assert meta == read_metadata(exported["pt"]) and meta["train_scale"] == 0.5
    assert [c["category_id"] for c in meta["classes"]] == [1, 2, 3, 4, 5, 6]


def test_an_onnx_model_scores_what_its_checkpoint_scores_whole_and_sliced(exported, tmp_path):
    gt = DEEPPCB / "annotations" / "val.json"
    images = tmp_path / "images"
    images.mkdir()
    chosen = VAL[:40]
    for im in chosen:
        (images / im["file_name"]).symlink_to(DEEPPCB / "images" / im["file_name"])
    subset = json.loads(gt.read_text())
    ids = {im["id"] for im in chosen}
    subset["images"] = chosen
    subset["annotations"] = [a for a in subset["annotations"] if a["image_id"] in ids]
    (tmp_path / "gt.json").write_text(json.dumps(subset))
    scores = {}
    for kind in ("pt", "onnx"):
        whole = tmp_path / f"{kind}-whole"
        assert main(["yolo", "predict", f"model={exported[kind]}", f"source={images}", "imgsz=320", "conf=0.001",
                     "max_det=100", "device=cpu", f"project={tmp_path}", f"name={kind}-whole", "exist_ok=True"]) == 0
        sliced = tmp_path / f"{kind}-sliced.json"
        assert main(["slice", str(exported[kind]), "--images", str(images), "--out", str(sliced), "--device", "cpu",
                     "--tile", "320"]) == 0
        for how, preds in (("whole", whole / "predictions.json"), ("sliced", sliced)):
            out = tmp_path / f"{kind}-{how}-eval.json"
            # ids 1..40 by file name (no json given): the same for both; scored through the folder's own ids json
            ids_json = whole / "images.json" if how == "whole" else sliced.with_name(f"{kind}-sliced.images.json")
            named = {im["id"]: im["file_name"] for im in json.loads(ids_json.read_text())["images"]}
            real = {im["file_name"]: im["id"] for im in chosen}
            preds_real = [{**p, "image_id": real[named[p["image_id"]]]} for p in json.loads(preds.read_text())]
            assert {p["category_id"] for p in preds_real} <= {1, 2, 3, 4, 5, 6}  # the original ids, from the metadata
            (tmp_path / "p.json").write_text(json.dumps(preds_real))
            assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "p.json"), "--json", str(out)]) == 0
            scores[kind, how] = json.loads(out.read_text())["AP_small"]
    for how in ("whole", "sliced"):
        assert scores["onnx", how] == pytest.approx(scores["pt", how], abs=0.002), how
    assert scores["pt", "sliced"] != scores["pt", "whole"]  # the sliced run did slice


def test_batched_tiles_score_as_one_tile_at_a_time(tmp_path):
    gt = DEEPPCB / "annotations" / "val.json"
    outs = {}
    for batch in (1, 9):
        out = tmp_path / f"b{batch}.json"
        images = tmp_path / "imgs"
        images.mkdir(exist_ok=True)
        for im in VAL[:12]:
            if not (images / im["file_name"]).exists():
                (images / im["file_name"]).symlink_to(DEEPPCB / "images" / im["file_name"])
        assert main(["slice", str(BUNDLED), "--images", str(images), "--out", str(out), "--tile", "320", "--batch",
                     str(batch), "--device", "cpu"]) == 0
        outs[batch] = json.loads(out.read_text())
    key = lambda p: (p["image_id"], p["category_id"])  # noqa: E731
    from collections import Counter

    assert Counter(map(key, outs[1])) == Counter(map(key, outs[9]))  # as many boxes of each class on each image
    s1 = sorted(p["score"] for p in outs[1])
    s9 = sorted(p["score"] for p in outs[9])
    assert np.abs(np.array(s1) - np.array(s9)).max() <= 2e-5  # batched convolutions round the last digit alike or not
