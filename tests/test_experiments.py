"""The experiment runner on a tiny matrix (tiny models at 64 px on a few bundled DeepPCB images):
complete ledger entries scored exactly as `smallbox eval` scores the same predictions, a
specialist fused with its partner, the budget, an interruption that leaves no entry and a resume
that does not redo finished runs, and the same runs as tasks of a local Ray instance."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from yolo_helpers import pycocotools_stats, subset_json

from smallbox.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"


@pytest.fixture
def matrix(tmp_path):
    for name, n, out in (("train.json", 8, "train8.json"), ("val.json", 4, "val4.json")):
        subset_json(DEEPPCB / "annotations" / name, n, tmp_path / out)
    model = ROOT / "recipes" / "models" / "yolo-tiny.yaml"
    (tmp_path / "tiny.yaml").write_text(f"""name: tiny
scale: cpu
data: {{train: train8.json, val: val4.json, images: {DEEPPCB / 'images'}, splits: ["small:0:32^2"]}}
seeds: [0, 1]
baseline: base
defaults: {{epochs: 1, imgsz: 64, batch: 4, workers: 0}}
arms:
  base: {{model: {model}, estimate_minutes: 0.5}}
  spec: {{model: {model}, split: small, fuse_with: base}}
""")
    return tmp_path


def run(folder, *extra):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(["experiments", "run", "tiny.yaml", "--device", "cpu", "--ledger", "ledger", "--work", "work", *extra])
    finally:
        os.chdir(cwd)


def entry(folder, arm, seed):
    return json.loads((folder / "ledger" / "tiny" / arm / f"seed{seed}" / "entry.json").read_text())


def test_entries_are_complete_and_scored_like_pycocotools(matrix):
    assert run(matrix, "--only", "spec") == 0  # spec is fused with base: base runs first
    for arm in ("base", "spec"):
        for seed in (0, 1):
            e = entry(matrix, arm, seed)
            assert (e["arm"], e["seed"], e["scale"], e["settings"]["args"]["seed"]) == (arm, seed, "cpu", seed)
            assert e["settings"]["pretrained"] == "random init" and e["hardware"]["cpu_count"] == os.cpu_count()
            assert e["wall_seconds"]["train"] > 0 and e["epochs_done"] == 1
            with gzip.open(matrix / "ledger" / "tiny" / arm / f"seed{seed}" / "predictions.json.gz", "rt") as f:
                preds = json.load(f)
            stats = pycocotools_stats(matrix / "val4.json", preds)
            got = [e["metrics"][k] for k in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")]
            assert got == pytest.approx(list(stats[:6]), abs=1e-6)
    spec = entry(matrix, "spec", 0)
    assert spec["fused"]["with"] == "base" and spec["settings"]["split"] == "small"
    assert (matrix / "ledger" / "tiny" / "spec" / "seed0" / "fused.json.gz").is_file()


def test_budget_starts_nothing_that_would_not_end_in_time(matrix, capsys):
    assert run(matrix, "--budget", "0") == 0
    out = capsys.readouterr().out
    assert "not started: base seed 0" in out and not (matrix / "ledger" / "tiny").exists()


def test_interrupted_run_leaves_no_entry_and_a_rerun_finishes_only_what_is_missing(matrix):
    assert run(matrix, "--only", "base") == 0
    first = (matrix / "ledger" / "tiny" / "base" / "seed0" / "entry.json").stat().st_mtime_ns
    proc = subprocess.Popen([sys.executable, "-m", "smallbox", "experiments", "run", "tiny.yaml", "--device", "cpu",
                             "--ledger", "ledger", "--work", "work"], cwd=matrix, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log = matrix / "work" / "tiny" / "runs" / "spec-s0.log"
    deadline = time.time() + 300
    while not (log.is_file() and log.stat().st_size > 0) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:]
    assert not (matrix / "ledger" / "tiny" / "spec").exists()  # nothing half-written
    assert not [p for p in (matrix / "ledger" / "tiny").iterdir() if p.name.startswith(".")]
    assert run(matrix) == 0
    assert entry(matrix, "spec", 1)["arm"] == "spec"
    assert (matrix / "ledger" / "tiny" / "base" / "seed0" / "entry.json").stat().st_mtime_ns == first


def test_runs_as_tasks_of_a_local_ray_instance(matrix):
    import ray

    try:
        assert run(matrix, "--only", "base", "--ray", "local") == 0
    finally:
        ray.shutdown()
    assert entry(matrix, "base", 0)["arm"] == "base" and entry(matrix, "base", 1)["seed"] == 1


def test_bad_matrix_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "m.yaml").write_text("name: x\ndata: {train: a.json, val: b.json, images: i}\nseeds: [0]\n"
                                     "arms: {a: {model: m.yaml, fuse_with: nope}}\n")
    assert main(["experiments", "run", str(tmp_path / "m.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unknown arm 'nope'" in err and "Traceback" not in err
