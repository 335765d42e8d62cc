"""Shared pieces of the YOLO tests: a small converted DeepPCB dataset, a network guard usable
outside function scope, and pycocotools as the independent reference."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"
TINY_MODEL = ROOT / "recipes" / "models" / "yolo-tiny.yaml"


def subset_json(src: Path, n: int, out: Path) -> Path:
    """The first ``n`` images of a COCO json with their boxes."""
    data = json.loads(src.read_text())
    images = data["images"][:n]
    keep = {im["id"] for im in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    out.write_text(json.dumps(data))
    return out


def convert_small_deeppcb(folder: Path, n_train: int = 8, n_val: int = 8) -> dict:
    """``smallbox convert`` of a few DeepPCB images; returns the paths the tests need."""
    from smallbox.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    train = subset_json(DEEPPCB / "annotations" / "train.json", n_train, folder / "train-orig.json")
    val = subset_json(DEEPPCB / "annotations" / "val.json", n_val, folder / "val-orig.json")
    out = folder / "dataset"
    rc = main(["convert", str(train), "--images", str(DEEPPCB / "images"), "--val", str(val), "--out", str(out)])
    assert rc == 0
    return {"data": out / "data.yaml", "train_json": train, "val_json": val, "root": out}


@contextlib.contextmanager
def no_network():
    """Any connection to a non-loopback address raises (for module-scoped fixtures, which run
    before the autouse function-scoped guard of conftest)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and not (str(address[0]).startswith("127.") or address[0] in ("localhost", "::1")):
            raise AssertionError(f"tried to open a network connection to {address}")
        return real_connect(self, address)

    saved = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = socket.socket.connect_ex = guarded
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = saved


def pycocotools_stats(gt, preds: list[dict], area_rng=None):
    """pycocotools' ``COCOeval.summarize()`` stats (12 numbers) of ``preds`` against ``gt``: a json
    path or a dataset dict (copied, so a duplicated annotation id stays as pycocotools sees it);
    ``area_rng``: other (all, small, medium, large) area ranges."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, dict):
            coco = COCO()
            coco.dataset = copy.deepcopy(gt)
            coco.createIndex()
        else:
            coco = COCO(str(gt))
        if preds:
            dt = coco.loadRes(copy.deepcopy(preds))
        else:  # loadRes refuses an empty list; an empty result set is still evaluable
            dt = COCO()
            dt.dataset = {"images": coco.dataset["images"], "categories": coco.dataset["categories"], "annotations": []}
            dt.createIndex()
        ev = COCOeval(coco, dt, "bbox")
        if area_rng is not None:
            ev.params.areaRng = area_rng
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def pycocotools_metrics(gt_path: Path, preds: list[dict], buckets=()) -> dict:
    """pycocotools' own numbers: ``coco/AP``... as named in results.csv, plus ``NAME/AP_small``...
    for each ``(name, (t1, t2))`` in ``buckets`` (extra area ranges evaluated separately)."""
    stats = pycocotools_stats(gt_path, preds)
    out = {f"coco/{k}": float(stats[i]) for i, k in enumerate(("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"))}
    out["coco/AR_100"] = float(stats[8])
    for name, (t1, t2) in buckets:
        s = pycocotools_stats(gt_path, preds, [[0, 1e10], [0, t1], [t1, t2], [t2, 1e10]])
        out.update({f"{name}/AP_small": float(s[3]), f"{name}/AP_medium": float(s[4]), f"{name}/AP_large": float(s[5])})
    return out
