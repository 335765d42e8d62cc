"""`torchrun --nproc_per_node 2 -m smallbox tv train` on CPU (gloo): each rank predicts its half
of the val images and rank 0 gathers them: the exported predictions equal a single process's
predictions with the same checkpoint, and results.csv equals `smallbox eval` on them."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest

from smallbox.cli import main
from smallbox.evaluate import evaluate
from test_tv import TINY_MODEL, write_subset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_gather_every_val_image(tmp_path, deeppcb_train, deeppcb_val, deeppcb_images):
    train_ids = [im["id"] for im in json.loads(deeppcb_train.read_text())["images"][:4]]
    val_ids = [im["id"] for im in json.loads(deeppcb_val.read_text())["images"][:6]]
    train_json = write_subset(deeppcb_train, train_ids, tmp_path / "train.json")
    val_json = write_subset(deeppcb_val, val_ids, tmp_path / "val.json")
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(json.dumps({"model": {**TINY_MODEL, "score_thresh": 0.0},
                                  "train": {"epochs": 1, "batch": 1, "workers": 0, "warmup_iters": 1},
                                  "eval": {"buckets": ["fit"], "batch": 1}}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "smallbox", "tv", "train", str(recipe),
           f"data.train={train_json}", f"data.val={val_json}", f"data.images={deeppcb_images}",
           f"train.project={tmp_path / 'runs'}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "runs" / "ddp"
    preds = json.loads((run / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} == set(val_ids)  # both ranks' halves, gathered
    row = list(csv.DictReader((run / "results.csv").open()))[-1]
    expected = evaluate(val_json, preds)
    for key in ("AP", "AP50", "AP_small", "AR_100"):
        assert float(row[f"coco/{key}"]) == pytest.approx(expected[key], abs=1e-5)

    # One process, the same checkpoint: the same boxes (the gather lost and duplicated nothing).
    assert main(["tv", "eval", str(run / "best.pt"), "--batch", "1", "--out", str(tmp_path / "single.json")]) == 0
    single = json.loads((tmp_path / "single.json").read_text())
    key = lambda p: (p["image_id"], p["category_id"], -p["score"], *p["bbox"])
    assert len(single) == len(preds) > 0
    for a, b in zip(sorted(preds, key=key), sorted(single, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3) and a["score"] == pytest.approx(b["score"], abs=1e-5)
