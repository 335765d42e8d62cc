"""Shared fixtures. Every test runs offline: any socket connection to a non-loopback address
fails the test, and Ultralytics is told not to download or install anything."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DEEPPCB = DATA / "deeppcb"
BCCD = DATA / "bccd"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Ultralytics reads its settings folder at import time: point it somewhere writable and empty, also
# where the user has one of their own (its runs_dir, datasets_dir ... must not change a test).
os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="smallbox-yolo-config-")


def _is_loopback(address) -> bool:
    if isinstance(address, tuple):
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return True  # unix sockets


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any attempt to reach the network."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if not _is_loopback(address):
            raise AssertionError(f"test tried to open a network connection to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: guarded(None, address))
    yield


@pytest.fixture(scope="session")
def deeppcb_val():
    return DEEPPCB / "annotations" / "val.json"


@pytest.fixture(scope="session")
def deeppcb_train():
    return DEEPPCB / "annotations" / "train.json"


@pytest.fixture(scope="session")
def deeppcb_images():
    return DEEPPCB / "images"


@pytest.fixture(scope="session")
def deeppcb_predictions():
    return sorted((DEEPPCB / "predictions").glob("*.json.gz"))


@pytest.fixture(scope="session")
def odd_deeppcb(tmp_path_factory):
    """DeepPCB made awkward (tests/odd_data.py): non-square images in sub-folders, category ids
    3, 7, 12, 40, 41, 99, large scattered image and annotation ids. 8 train and 4 val images."""
    from odd_data import make_odd_deeppcb

    root = tmp_path_factory.mktemp("odd-deeppcb")
    train = make_odd_deeppcb(DEEPPCB / "annotations" / "train.json", DEEPPCB / "images", root, 8)
    val = make_odd_deeppcb(DEEPPCB / "annotations" / "val.json", DEEPPCB / "images", root, 4)
    return {"root": root, "images": root / "images", "train": train, "val": val}


@pytest.fixture(scope="session")
def tiny_yolo_run(odd_deeppcb, tmp_path_factory):
    """A real `smallbox yolo train` run (tiny random-init model, 2 epochs at 96 px) on the
    converted odd dataset: a run folder as users get it."""
    from yolo_helpers import TINY_MODEL, no_network

    from smallbox.cli import main

    folder = tmp_path_factory.mktemp("tiny-yolo")
    data = folder / "data"
    assert main(["convert", str(odd_deeppcb["train"]), "--images", str(odd_deeppcb["images"]), "--val",
                 str(odd_deeppcb["val"]), "--out", str(data), "--split", "small:0:32^2"]) == 0
    with no_network():
        rc = main(["yolo", "train", f"model={TINY_MODEL}", f"data={data / 'data.yaml'}", "epochs=2", "imgsz=96",
                   "batch=4", "device=cpu", "workers=0", "plots=False", "seed=0", f"project={folder / 'runs'}",
                   "name=yolo-tiny", "exist_ok=True"])
    assert rc == 0
    return {"dir": folder / "runs" / "yolo-tiny", "data": data / "data.yaml", "dataset": data,
            "weights": folder / "runs" / "yolo-tiny" / "weights" / "best.pt"}


TINY_TV = ["model.backbone=resnet18", "model.min_size=128", "model.max_size=128", "model.fpn_channels=32",
           "model.rpn_pre_nms_top_n_train=200", "model.rpn_post_nms_top_n_train=100", "model.rpn_pre_nms_top_n_test=100",
           "model.rpn_post_nms_top_n_test=50", "model.box_batch_size_per_image=64", "model.score_thresh=0.001",
           "train.epochs=2", "train.batch=2", "train.workers=0", "train.warmup_iters=2", "train.limit_batches=2",
           "train.device=cpu", "eval.interval=1"]


@pytest.fixture(scope="session")
def tiny_tv_run(odd_deeppcb, tmp_path_factory):
    """A real `smallbox tv train` run (tiny Faster R-CNN, 2 short epochs at 128 px) on the odd dataset."""
    from yolo_helpers import no_network

    from smallbox.cli import main

    folder = tmp_path_factory.mktemp("tiny-tv")
    with no_network():
        rc = main(["tv", "train", str(ROOT / "recipes" / "tv" / "smoke.yaml"), f"data.train={odd_deeppcb['train']}",
                   f"data.val={odd_deeppcb['val']}", f"data.images={odd_deeppcb['images']}", *TINY_TV,
                   f"train.project={folder}", "train.name=tv-tiny"])
    assert rc == 0
    return {"dir": folder / "tv-tiny", "weights": folder / "tv-tiny" / "best.pt"}
