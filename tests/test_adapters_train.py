"""A tiny random-init Swin-YOLO with the size-weighted loss, trained by ``smallbox yolo train`` on
a few DeepPCB images at 128 px on CPU: interrupted after epoch 1, resumed in a fresh process,
then its best.pt loaded, validated and used for prediction in another fresh process that imports
only Ultralytics."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys

import pytest
import yaml

from yolo_helpers import ROOT, convert_small_deeppcb, no_network

TINY_SWIN_SW = ROOT / "recipes" / "models" / "swin-tiny-test-sw-yolo.yaml"
WEIGHTING = {"thresholds": [1024, 9216], "weights": [3.0, 1.5, 1.0], "renorm": True}
TRAIN = ["epochs=2", "imgsz=128", "batch=4", "device=cpu", "workers=0", "plots=False", "seed=0", "exist_ok=True"]
COLUMNS = ["coco/AP", "coco/AP50", "coco/AP_small", "coco/AP_medium", "coco/AP_large", "fit/AP_small"]


class _Interrupt(KeyboardInterrupt):
    """Stops training after epoch 1 the way Ctrl-C does, leaving a resumable last.pt."""


def _env():
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from ultralytics.utils import LOGGER
    from ultralytics.utils.callbacks import base

    from smallbox.cli import main

    # smallbox's trainer adds its callbacks itself: Ultralytics' defaults stay untouched
    assert not any("smallbox" in getattr(f, "__module__", "") for fs in base.default_callbacks.values() for f in fs)

    folder = tmp_path_factory.mktemp("swin-train")
    dataset = convert_small_deeppcb(folder)
    model_path = TINY_SWIN_SW
    assert yaml.safe_load(model_path.read_text())["size_weighting"] == WEIGHTING

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise _Interrupt

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    LOGGER.addHandler(handler)
    saved = base.default_callbacks
    base.default_callbacks = {
        **saved,
        "on_fit_epoch_end": [*saved["on_fit_epoch_end"], stop_after_first_epoch],
    }
    try:
        with no_network():
            rc = main(["yolo", "train", f"model={model_path}", f"data={dataset['data']}", f"project={folder / 'runs'}", "name=swin", *TRAIN])
    finally:
        base.default_callbacks = saved
        LOGGER.removeHandler(handler)
    assert rc == 130  # interrupted after epoch 1, as planned
    run_dir = folder / "runs" / "swin"
    resumed = subprocess.run(
        [sys.executable, "-m", "smallbox", "yolo", "train", "resume", f"model={run_dir / 'weights' / 'last.pt'}"],
        capture_output=True, text=True, env=_env(), cwd=folder, timeout=600,
    )
    return {**dataset, "dir": run_dir, "log": records, "resumed": resumed, "folder": folder}


def test_training_logs_input_geometry_and_loss(run):
    log = "\n".join(run["log"])
    assert log.count("smallbox input: network input") == 1
    assert "smallbox size-weighted box loss: small [0, 32²) x3" in log
    assert "timm swin_tiny_patch4_window7_224 (timm weights: none): channels [64, 128, 256], strides [8, 16, 32]" in log
    # DeepPCB images are 640 px: at imgsz=128 the run must say it shrinks them 5x.
    assert "network input 128x128" in log and "median long side 640 px, resized x0.2 " in log
    assert "covers less than one cell of the finest feature map at imgsz=128" in log  # 6.4 px < stride 8


def test_resume_in_a_fresh_process_completes_with_ap_small_columns(run):
    assert run["resumed"].returncode == 0, run["resumed"].stderr[-3000:]
    out = run["resumed"].stdout + run["resumed"].stderr
    assert "Resuming training" in out and "smallbox size-weighted box loss" in out
    assert "smallbox input: network input 128x128" in out
    with open(run["dir"] / "results.csv", newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    for row in rows:
        assert all(row.get(k) not in (None, "") for k in COLUMNS)
    info = json.loads((run["dir"] / "smallbox.json").read_text())
    assert info["backbone"].startswith("TimmBackbone(swin_tiny") and info["epochs"] == 2


LOAD_SCRIPT = r"""
import json, sys
from ultralytics import YOLO
model = YOLO(sys.argv[1])
net = model.model
report = {
    "smallbox_imported": "smallbox.adapters" in sys.modules,
    "model_class": type(net).__name__,
    "backbone_class": type(net.model[0]).__name__,
    "size_weighting": net.yaml.get("size_weighting"),
    "criterion": type(net.init_criterion()).__name__,
}
result = model.predict(sys.argv[2], imgsz=128, device="cpu", conf=0.0, max_det=5, verbose=False)[0]
report["pred_shape"] = list(result.boxes.data.shape)
metrics = model.val(data=sys.argv[3], imgsz=128, batch=4, device="cpu", workers=0, plots=False, verbose=False, project=sys.argv[4])
report["map50"] = float(metrics.box.map50)
print("REPORT " + json.dumps(report))
"""


def test_best_pt_loads_predicts_and_validates_without_importing_smallbox(run):
    assert run["resumed"].returncode == 0
    image = sorted((run["root"] / "images" / "val").iterdir())[0]
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(run["dir"] / "weights" / "best.pt"), str(image), str(run["data"]), str(run["folder"] / "val")],
        capture_output=True, text=True, env=_env(), cwd=run["folder"], timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report["smallbox_imported"]  # unpickling the checkpoint imported it, nothing else did
    assert report["model_class"] == "SmallboxDetectionModel" and report["backbone_class"] == "TimmBackbone"
    assert report["size_weighting"] == WEIGHTING and report["criterion"] == "SmallboxDetectionLoss"
    assert report["pred_shape"] == [5, 6]
    assert 0.0 <= report["map50"] <= 1.0


def test_missing_pretrained_file_fails_cleanly_from_the_cli(run, tmp_path, monkeypatch, capsys):
    """ImageNet weights are named on the command line (pretrained=): a missing file is said so
    (exit 2, no traceback), nothing is downloaded and no run folder is left."""
    from smallbox.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMALLBOX_WEIGHTS_DIR", raising=False)
    rc = main(["yolo", "train", f"model={ROOT / 'recipes' / 'models' / 'swin-t-yolo.yaml'}", f"data={run['data']}",
               "pretrained=weights/swin_tiny_patch4_window7_224.safetensors",
               f"project={tmp_path / 'runs'}", "name=x", "epochs=1", "imgsz=64", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "weights/swin_tiny_patch4_window7_224.safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
