"""``smallbox report RUN_DIR ... --report-split REPORT.json``: each run's chosen checkpoint scored
on a split that neither trained nor chose it.

Why: a run's best.pt is the epoch that scored highest on its val split, so its val numbers (the
best row of results.csv) are lifted by the luck of that pick, the noisier runs the most. Here each
run's checkpoint (``weights/best.pt``; ``best.pt`` of a tv run) is predicted on the report split
the way a user would predict it (``smallbox yolo predict`` at the run's imgsz and evaluation
settings, ``smallbox slice`` for a model trained on tiles, ``smallbox tv predict``), and scored
with ``smallbox eval``'s evaluator. A report split that shares an image (by file name) with the
json that picked the checkpoint, or that trained it, is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..datasets import SizeBuckets, load_coco
from ..errors import SmallboxError
from ..runfolder import resolve_path
from .groundtruth import run_ground_truth


def checkpoint_of(run) -> Path:
    """The checkpoint a run chose: ``weights/best.pt`` (YOLO) or ``best.pt`` (torchvision)."""
    for path in (run.folder / "weights" / "best.pt", run.folder / "best.pt"):
        if path.is_file():
            return path
    raise SmallboxError(f"{run.folder}: no best.pt (weights/best.pt or best.pt) to score on the report split")


def file_names(path) -> set[str]:
    from ..fileio import read_json

    data = read_json(path)
    return {os.path.normpath(str(im.get("file_name", ""))) for im in data.get("images", [])}


def check_disjoint(run, report: Path, report_names: set[str]) -> str:
    """The json that picked the run's checkpoint (its val split), checked to share no image with
    the report split, as is its training json where the run names it; returns the picking json's name."""
    picked = run_ground_truth(run.folder, run.info)
    for role, path in (("picked the checkpoint of", picked), ("trained", _train_json(run))):
        if path is None or not Path(path).is_file():
            continue
        shared = report_names & file_names(path)
        if shared:
            raise SmallboxError(f"--report-split {report}: shares {len(shared)} image(s) with {path}, which {role} "
                                f"{run.name} (e.g. {sorted(shared)[0]}): score on images that neither trained nor picked it")
    if picked is None:
        raise SmallboxError(f"{run.folder}: which json picked its checkpoint is not recorded (smallbox.json val); "
                            "cannot tell the report split apart from it")
    return picked.name


def _train_json(run) -> Path | None:
    """The training json of a run on a converted dataset (its data.yaml's train split), if found."""
    from ..datasets.manifest import dataset_section, read_data_yaml

    data = resolve_path(run.folder, run.info.get("data"))
    if data is None or not data.is_file():
        return None
    if data.suffix in (".json", ".gz"):
        return data
    try:
        section = dataset_section(read_data_yaml(data), data)
    except SmallboxError:
        return None
    if section is None:
        return None
    split = f"train-{section.area_range['name']}" if section.area_range else "train"
    return section.ground_truth(split) if split in section.coco else section.ground_truth("train")


def predict_on_report(run, report: Path, images: Path, out_dir: Path) -> Path:
    """The run's checkpoint predicted on the report images (original ids), as a user would."""
    from ..predictions.images import linked_image_folder

    weights = checkpoint_of(run)
    out = out_dir / f"{run.name.replace('/', '_')}.json"
    ev = run.info.get("evaluation") or {}
    conf, iou = ev.get("conf") or 0.001, ev.get("iou") or 0.7
    env = {**os.environ, "SMALLBOX_IMAGE_IDS": str(report)}
    # a flat folder of exactly the report's images: every predicting command lists a folder's own files
    folder = linked_image_folder(load_coco(report, check_files=False), images, out_dir / ".report-images")
    run_dir = out_dir / ".predict" / run.name.replace("/", "_")
    if run.info.get("path") == "tv":
        cmd = ["tv", "predict", str(weights), "--images", str(folder), "--coco", str(report), "--out", str(out)]
    elif ev.get("sliced"):
        cmd = ["slice", str(weights), "--images", str(folder), "--gt", str(report), "--out", str(out),
               f"--conf={conf}", f"--iou={iou}"]
    else:
        cmd = ["yolo", "predict", f"model={weights}", f"source={folder}", f"imgsz={run.info.get('imgsz') or 640}",
               f"conf={conf}", f"iou={iou}", f"max_det={ev.get('max_det') or 100}", "save=False", "verbose=False",
               f"project={run_dir.parent}", f"name={run_dir.name}", "exist_ok=True"]
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "smallbox", *cmd], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SmallboxError(f"{run.name}: predicting the report split failed: " + " | ".join(tail))
    if cmd[0] == "yolo":
        os.replace(run_dir / "predictions.json", out)
    return out


def score_runs_on_report(runs: list, report, images, out_dir) -> tuple:
    """Each run's checkpoint predicted and scored on ``report``; replaces each run's metrics and
    predictions with those. Returns the report ground truth and the names of the jsons that picked."""
    from ..callbacks.coco_metrics import flatten_metrics
    from ..evaluate import evaluate
    from ..predictions import load_predictions

    report = Path(report)
    gt = load_coco(report, check_files=False)
    names = file_names(report)
    picked = {}
    for run in runs:
        picked[run.name] = check_disjoint(run, report, names)
    for run in runs:
        path = predict_on_report(run, report, Path(images), Path(out_dir))
        preds = load_predictions(path, [im["id"] for im in gt.images], gt.category_ids)
        buckets = [SizeBuckets.from_dict(d) for d in run.info.get("buckets") or [] if d.get("name") != "coco"]
        run.metrics = flatten_metrics(evaluate(gt, preds, buckets), buckets)
        run.fallback = set()
        run.report_predictions = path
        best = run.info.get("best") or {}
        run.epoch = best.get("epoch") if isinstance(best.get("epoch"), int) else "best"
    return gt, picked
