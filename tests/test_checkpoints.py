"""Checkpoints that leave smallbox: a YOLOv8n trained by ``smallbox yolo train`` (with the
size-weighted loss and NWD, which live in the trainer) is a stock Ultralytics checkpoint that
plain Ultralytics, in a process where ``import smallbox`` fails, loads, predicts (the same boxes
as ``smallbox yolo predict``), validates, fine-tunes and exports; smallbox reads its metadata
back (classes with their category ids, size buckets, training scale) and fine-tunes it with its
loss again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from yolo_helpers import DEEPPCB, ROOT, convert_small_deeppcb, no_network

from smallbox.cli import main

BLOCK_SMALLBOX = """
import sys
class _NoSmallbox:
    def find_spec(self, name, path=None, target=None):
        if name == "smallbox" or name.startswith("smallbox."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a plain Ultralytics environment)")
sys.meta_path.insert(0, _NoSmallbox())
"""


def plain_ultralytics(script: str, *args, cwd) -> subprocess.CompletedProcess:
    code = BLOCK_SMALLBOX + script
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "PATH": "/usr/bin:/bin",
                                            "HOME": str(cwd), "YOLO_CONFIG_DIR": str(cwd)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """YOLOv8n with the report's size-weighted loss and NWD, one epoch at 96 px on 8 images."""
    folder = tmp_path_factory.mktemp("stock")
    paths = convert_small_deeppcb(folder / "data", n_train=8, n_val=4)
    recipe = folder / "sw-nwd.yaml"
    recipe.write_text(f"base: {ROOT / 'recipes' / 'size_weighting' / 'yolov8n-sw-32-96-w3.0-1.5.yaml'}\n"
                      "loss: {nwd: {constant: auto, ratio: 0.5}}\n")
    with no_network():
        assert main(["yolo", "train", f"model={recipe}", f"data={paths['data']}", "imgsz=96", "epochs=1", "batch=4",
                     "workers=0", "device=cpu", f"project={folder}", "name=run", "plots=False"]) == 0
    return {"folder": folder, "weights": folder / "run" / "weights" / "best.pt", **paths}


def test_the_checkpoint_is_stock_and_carries_plain_metadata(trained):
    import zipfile

    with zipfile.ZipFile(trained["weights"]) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"smallbox.adapters" not in pickled and b"ultralytics.nn.tasks\nDetectionModel" in pickled.replace(b"\x94", b"")
    from ultralytics.nn.tasks import load_checkpoint

    from smallbox.adapters.yolo.metadata import read_metadata

    model = load_checkpoint(trained["weights"])[0]
    meta = read_metadata(model)
    assert [c["category_id"] for c in meta["classes"]] == [1, 2, 3, 4, 5, 6] and meta["imgsz"] == 96
    assert meta["train_scale"] == pytest.approx(96 / 640) and meta["buckets"][0]["name"] == "coco"
    assert model.yaml["size_weighting"]["weights"] == [3.0, 1.5, 1.0] and model.yaml["loss"]["nwd"]["ratio"] == 0.5


def test_plain_ultralytics_predicts_the_same_boxes_as_smallbox(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for im in json.loads((DEEPPCB / "annotations" / "val.json").read_text())["images"][:6]:
        (images / im["file_name"]).symlink_to(DEEPPCB / "images" / im["file_name"])
    for weights, imgsz in ((trained["weights"], 96), (ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt", 320)):
        script = """
import json
from ultralytics import YOLO
model = YOLO(sys.argv[1])
out = {}
for r in model.predict(sys.argv[2], imgsz=int(sys.argv[3]), conf=0.001, iou=0.7, max_det=100, verbose=False):
    out[r.path.rsplit("/", 1)[-1]] = [[*b, float(c), int(k)] for b, c, k in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())]
print(json.dumps(out))
"""
        plain = json.loads(plain_ultralytics(script, weights, images, imgsz, cwd=tmp_path).stdout.strip().splitlines()[-1])
        with no_network():
            assert main(["yolo", "predict", f"model={weights}", f"source={images}", f"imgsz={imgsz}", "conf=0.001",
                         "iou=0.7", "max_det=100", "device=cpu", f"project={tmp_path}", f"name=sb{imgsz}", "exist_ok=True",
                         "verbose=False"]) == 0
        ours = json.loads((tmp_path / f"sb{imgsz}" / "predictions.json").read_text())
        names = {im["id"]: im["file_name"] for im in json.loads((tmp_path / f"sb{imgsz}" / "images.json").read_text())["images"]}
        assert sum(len(v) for v in plain.values()) == len(ours) > 0
        for name, boxes in plain.items():
            mine = sorted((p["score"], p["bbox"]) for p in ours if names[p["image_id"]] == name)
            theirs = sorted((round(c, 5), [x1, y1, x2 - x1, y2 - y1]) for x1, y1, x2, y2, c, _ in boxes)
            assert [s for s, _ in mine] == pytest.approx([s for s, _ in theirs], abs=1e-5)
            flat = lambda rows: [v for _, b in rows for v in b]  # noqa: E731
            assert flat(mine) == pytest.approx(flat(theirs), abs=0.01)


def test_plain_ultralytics_validates_fine_tunes_and_exports(trained, tmp_path):
    script = """
from ultralytics import YOLO
model = YOLO(sys.argv[1])
metrics = model.val(data=sys.argv[2], imgsz=96, batch=4, device="cpu", workers=0, plots=False, verbose=False,
                    project=sys.argv[3], name="val")
print("mAP50-95", metrics.box.map)
model.train(data=sys.argv[2], imgsz=96, epochs=1, batch=4, device="cpu", workers=0, plots=False, project=sys.argv[3],
            name="ft", val=False)
print("exported", YOLO(sys.argv[1]).export(format="torchscript", imgsz=96))
"""
    out = plain_ultralytics(script, trained["weights"], trained["data"], tmp_path, cwd=tmp_path).stdout
    assert "mAP50-95" in out and "exported" in out and (tmp_path / "ft" / "weights" / "last.pt").is_file()


def test_smallbox_fine_tunes_a_stock_checkpoint_with_its_loss_again(trained, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "smallbox", "yolo", "train", f"model={trained['weights']}",
                           f"data={trained['data']}", "imgsz=96", "epochs=1", "batch=4", "workers=0", "device=cpu",
                           f"project={tmp_path}", "name=ft", "plots=False"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = proc.stdout + proc.stderr
    assert "smallbox size-weighted box loss" in printed and "NWD (C = " in printed  # rebuilt from the YAML's plain data
    from ultralytics.nn.tasks import load_checkpoint

    model = load_checkpoint(tmp_path / "ft" / "weights" / "last.pt")[0]
    assert type(model).__name__ == "DetectionModel" and model.yaml["loss"]["nwd"]["ratio"] == 0.5
