"""The experiment runner on a tiny matrix (tiny models at 64 px on a few bundled DeepPCB images):
complete ledger entries scored on the report split exactly as `smallbox eval` scores the same
predictions, checkpoints picked on the select split, an inference-only arm equal to `yolo predict`
+ `smallbox eval` of its parent's checkpoint, a specialist fused with its partner, the budget, an
interruption that leaves no entry, a resume that does not redo finished runs but redoes broken
ones, the same runs as tasks of a local Ray instance, and a bad matrix refused whole before any
work."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
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


MODEL = ROOT / "recipes" / "models" / "yolo-tiny.yaml"


def write_data(folder: Path) -> None:
    """Three disjoint splits of the bundled data: train (8 images), select (4), report (4)."""
    for name, n, out in (("train-699.json", 8, "train8.json"), ("select-101.json", 4, "sel4.json"),
                         ("val.json", 4, "val4.json")):
        subset_json(DEEPPCB / "annotations" / name, n, folder / out)


MATRIX = f"""name: tiny
scale: cpu
data: {{train: train8.json, select: sel4.json, report: val4.json, images: {DEEPPCB / 'images'}, splits: ["small:0:32^2"]}}
seeds: [0, 1]
baseline: base
defaults: {{epochs: 1, imgsz: 64, batch: 4, workers: 0}}
arms:
  base: {{model: {MODEL}, estimate_minutes: 0.5}}
  spec: {{model: {MODEL}, split: small, fuse_with: base, fuse: {{gate: small}}}}
  p96: {{init_from: base, train: false, predict: {{imgsz: 96}}}}
"""


@pytest.fixture
def matrix(tmp_path):
    write_data(tmp_path)
    (tmp_path / "tiny.yaml").write_text(MATRIX)
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
    report_ids = {im["id"] for im in json.loads((matrix / "val4.json").read_text())["images"]}
    for arm in ("base", "spec"):
        for seed in (0, 1):
            e = entry(matrix, arm, seed)
            assert (e["arm"], e["seed"], e["scale"], e["settings"]["args"]["seed"]) == (arm, seed, "cpu", seed)
            assert e["settings"]["pretrained"] == "random init" and e["hardware"]["cpu_count"] == os.cpu_count()
            assert e["wall_seconds"]["train"] > 0 and e["cpu_seconds"]["train"] > 0 and e["epochs_done"] == 1
            assert e["predict_ms_per_image"] > 0
            folder = matrix / "ledger" / "tiny" / arm / f"seed{seed}"
            for role, name in (("train", "train8.json"), ("select", "sel4.json"), ("report", "val4.json")):
                recorded = e["data"][role]
                assert (folder / recorded["path"]).resolve() == (matrix / name).resolve()
                assert recorded["sha1"] == hashlib.sha1((matrix / name).read_bytes()).hexdigest()
            assert e["checkpoint"]["selected_by"].startswith("coco/AP on the select split") and e["checkpoint"]["epoch"] == 1
            with gzip.open(folder / "predictions.json.gz", "rt") as f:
                preds = json.load(f)
            assert {p["image_id"] for p in preds} <= report_ids  # scored on the report split, not on select
            stats = pycocotools_stats(matrix / "val4.json", preds)
            got = [e["metrics"][k] for k in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")]
            assert got == pytest.approx(list(stats[:6]), abs=1e-6)
    spec = entry(matrix, "spec", 0)
    assert spec["fused"]["with"] == "base" and spec["settings"]["split"] == "small" and spec["fused"]["gate"] == "small"
    assert (matrix / "ledger" / "tiny" / "spec" / "seed0" / "fused.json.gz").is_file()


def test_an_inference_only_arm_equals_predict_and_eval_of_its_parents_checkpoint(matrix, tmp_path_factory):
    assert run(matrix, "--only", "p96") == 0
    e = entry(matrix, "p96", 0)
    assert e["settings"]["inference"] == {"how": "smallbox yolo predict", "imgsz": 96, "trained_imgsz": 64}
    assert "train" not in e["cpu_seconds"] and e["weights"] is None and e["checkpoint"]["file"] == "base/seed0/best.pt"
    # the user's way: the parent's checkpoint, predicted at 96 on the report images, scored by smallbox eval
    images = tmp_path_factory.mktemp("report-images")
    for im in json.loads((matrix / "val4.json").read_text())["images"]:
        shutil.copy(DEEPPCB / "images" / im["file_name"], images / im["file_name"])
    weights = matrix / "ledger" / "tiny" / "base" / "seed0" / "best.pt"
    env = {**os.environ, "SMALLBOX_IMAGE_IDS": str(matrix / "val4.json")}
    subprocess.run([sys.executable, "-m", "smallbox", "yolo", "predict", f"model={weights}", f"source={images}",
                    "imgsz=96", "conf=0.001", "iou=0.7", "max_det=100", "device=cpu", f"project={images.parent}",
                    "name=pred", "exist_ok=True"], check=True, env=env, cwd=images.parent, capture_output=True)
    assert main(["eval", str(matrix / "val4.json"), str(images.parent / "pred" / "predictions.json"),
                 "--json", str(images.parent / "eval.json")]) == 0
    by_eval = json.loads((images.parent / "eval.json").read_text())
    for key in ("AP", "AP50", "AP_small", "AP_medium"):
        assert e["metrics"][key] == pytest.approx(by_eval[key], abs=1e-6)


def test_a_report_split_sharing_images_with_train_or_select_is_refused(matrix, capsys):
    for role in ("train8.json", "sel4.json"):
        text = MATRIX.replace("report: val4.json", f"report: {role}")
        (matrix / "tiny.yaml").write_text(text)
        assert run(matrix) == 2
        err = capsys.readouterr().err
        assert "data.report: shares" in err and "Traceback" not in err
        assert not (matrix / "work").exists() and not (matrix / "ledger").exists()  # refused before any work
    (matrix / "tiny.yaml").write_text(MATRIX.replace("select: sel4.json", "select: train8.json"))
    assert run(matrix) == 2
    assert "data.select: shares 8 image(s) with data.train" in capsys.readouterr().err


def test_a_broken_entry_is_run_again(matrix, capsys):
    assert run(matrix, "--only", "base") == 0
    folder = matrix / "ledger" / "tiny" / "base"
    (folder / "seed0" / "entry.json").write_text((folder / "seed0" / "entry.json").read_text()[:100])  # cut short
    gz = (folder / "seed1" / "predictions.json.gz").read_bytes()
    (folder / "seed1" / "predictions.json.gz").write_bytes(gz[:len(gz) // 2])  # a copy cut off
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(matrix)  # the matrix's data paths are relative to the current folder
    try:
        assert main(["experiments", "status", "tiny.yaml", "--ledger", "ledger"]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert out.count("broken   base") == 2 and "not valid json" in out and "predictions.json.gz: cut short or not gzip" in out
    assert run(matrix, "--only", "base") == 0
    out = capsys.readouterr().out
    assert out.count("not a whole entry, run again: base") == 2 and "done 2" in out
    assert entry(matrix, "base", 0)["seed"] == 0 and (folder / "seed1" / "predictions.json.gz").is_file()
    assert len(list(folder.glob(".seed*.broken-*"))) == 2  # set aside, not deleted


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
    assert "refers to unknown arm 'nope'" in err and "data.val: name the two roles" in err and "Traceback" not in err


def test_every_problem_of_a_matrix_is_listed_at_once_before_any_work(matrix, capsys):
    bad = (MATRIX.replace("seeds: [0, 1]", 'seeds: "012"')
           .replace("defaults: {epochs: 1,", "keep_weights_mb: lots\ndefaults: {seed: 0, epochs: 1,")
           .replace(f"base: {{model: {MODEL},", "base: {model: nosuch/model.yaml, args: {seed: 3},")
           .replace("estimate_minutes: 0.5", "estimate_minutes: .nan"))
    (matrix / "tiny.yaml").write_text(bad)
    assert run(matrix) == 2
    err = capsys.readouterr().err
    for expected in ("seeds: must be a non-empty list of integers", "keep_weights_mb: must be a finite number",
                     "defaults.seed: not allowed", "arms.base.args.seed: not allowed", "arms.base.model: model=",
                     "arms.base.estimate_minutes: must be a finite number"):
        assert expected in err, expected
    assert "Traceback" not in err and not (matrix / "work").exists()


@pytest.mark.parametrize("text, message", [
    ("seeds: 3", "seeds: must be a non-empty list"),
    ("seeds: [zero, one]", "seeds: must be non-negative integers"),
    ("seeds: [0, 0]", "seed listed twice"),
])
def test_bad_seeds_are_refused(matrix, capsys, text, message):
    (matrix / "tiny.yaml").write_text(MATRIX.replace("seeds: [0, 1]", text))
    assert run(matrix) == 2
    assert message in capsys.readouterr().err


def test_arms_as_a_list_and_bad_options_are_refused(matrix, capsys):
    arms_at = MATRIX.index("arms:")
    (matrix / "tiny.yaml").write_text(MATRIX[:arms_at] + "arms: [base, spec]\n")
    assert run(matrix) == 2
    assert "arms: must be a mapping of arm name -> settings" in capsys.readouterr().err
    (matrix / "tiny.yaml").write_text(MATRIX)
    (matrix / "afile").write_text("x")
    for extra, message in ((["--budget", "nan"], "must be a finite number"), (["--budget", "-5"], "must be >= 0"),
                           (["--ledger", str(matrix / "afile")], "is a file, not a folder"), (["--parallel", "0"], "must be >= 1")):
        with pytest.raises(SystemExit) as stop:
            main(["experiments", "run", str(matrix / "tiny.yaml"), *extra])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err, extra
    assert not (matrix / "work").exists()


def test_an_inference_only_arm_predicts_with_an_exported_model(matrix):
    """`train: false` with `model: X.onnx`: the runner predicts the report split with the export
    through Ultralytics' AutoBackend; the entry keeps the original category ids it carries."""
    from ultralytics import YOLO

    from smallbox.adapters.yolo.register import register

    weights = matrix / "bundled.pt"
    weights.write_bytes((ROOT / "data" / "models" / "yolov8n-deeppcb-320.pt").read_bytes())
    register()
    onnx = YOLO(str(weights)).export(format="onnx", imgsz=320, dynamic=True, simplify=False, device="cpu")
    (matrix / "tiny.yaml").write_text(MATRIX.replace("  p96:", f"  exported: {{train: false, model: {onnx}}}\n  p96:"))
    assert run(matrix, "--only", "exported") == 0
    e = entry(matrix, "exported", 0)
    assert e["settings"]["inference"]["imgsz"] == 320 and e["checkpoint"]["selected_by"] == "given (model:)"
    with gzip.open(matrix / "ledger" / "tiny" / "exported" / "seed0" / "predictions.json.gz", "rt") as f:
        preds = json.load(f)
    assert preds and {p["category_id"] for p in preds} <= {1, 2, 3, 4, 5, 6} and e["metrics"]["AP"] > 0.1
