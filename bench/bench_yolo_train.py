"""Per-epoch time of `smallbox yolo train` vs the stock `yolo train`, same data and settings.

The difference is smallbox's validator (predictions mapped back to the original ids and
evaluated against the original COCO json every epoch) and trainer. CPU, the tiny model of
recipes/models/yolo-tiny.yaml, the bundled DeepPCB subset (80 train / 200 val images), 160 px.
Each command runs REPEATS times, alternating which goes first, and an epoch's time is read off
results.csv (``time`` is cumulative); the first epoch (warm-up, dataset caching) is left out. On a shared
machine wall time swings with the neighbours' load, so the CPU time of each whole run (user +
system, all threads, start-up included) is compared too: the steadier of the two numbers.

A random-init tiny model predicts few boxes, so a second number prices the evaluation at a
realistic load: mapping + evaluating a trained YOLOv8s's predictions on the same 200 images
(bundled), which is what each validation adds on a real run.

Checks (exit code 1 naming the missed ones): the training losses of every epoch are the same in
both (smallbox changes the validation, not the training: seed 0, deterministic); median
per-epoch wall time <= 1.05x the stock one (<= 5% overhead).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checks import report_checks  # bench/checks.py: python bench/X.py puts bench/ on the path

ROOT = Path(__file__).resolve().parents[1]
DEEPPCB = ROOT / "data" / "deeppcb"
PY = sys.executable
YOLO = str(Path(PY).with_name("yolo"))
EPOCHS, REPEATS = int(os.environ.get("BENCH_EPOCHS", 4)), int(os.environ.get("BENCH_REPEATS", 2))
MAX_OVERHEAD = 1.05
LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
SETTINGS = [f"epochs={EPOCHS}", "imgsz=160", "batch=16", "device=cpu", "workers=0", "plots=False", "seed=0",
            "deterministic=True", "exist_ok=True", f"model={ROOT / 'recipes' / 'models' / 'yolo-tiny.yaml'}"]


def convert(out: Path) -> Path:
    subprocess.run([PY, "-m", "smallbox", "convert", str(DEEPPCB / "annotations" / "train.json"), "--images",
                    str(DEEPPCB / "images"), "--val", str(DEEPPCB / "annotations" / "val.json"), "--out", str(out)],
                   check=True, capture_output=True)
    return out / "data.yaml"


def read_rows(results_csv: Path) -> list[dict]:
    with open(results_csv, newline="") as f:
        return [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]


def epoch_times(rows: list[dict]) -> list[float]:
    total = [float(r["time"]) for r in rows]
    return [b - a for a, b in zip(total, total[1:])]  # epochs 2..N


def losses(rows: list[dict]) -> list[tuple[float, ...]]:
    return [tuple(float(r[k]) for k in LOSSES) for r in rows]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(cmd: list[str], data: Path, project: Path, name: str) -> tuple[list[dict], float]:
    """The rows of results.csv, and CPU seconds of the whole run."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cpu = children_cpu()
    subprocess.run([*cmd, "train", f"data={data}", f"project={project}", f"name={name}", *SETTINGS],
                   check=True, capture_output=True, env=env)
    return read_rows(project / name / "results.csv"), children_cpu() - cpu


def evaluation_cost() -> tuple[float, int]:
    """Seconds to map a trained model's val predictions to COCO results and evaluate them."""
    import numpy as np

    from smallbox.datasets import SizeBuckets, load_coco
    from smallbox.evaluate import evaluate
    from smallbox.predictions import to_coco_results

    gt = load_coco(DEEPPCB / "annotations" / "val.json", check_files=False)
    with gzip.open(DEEPPCB / "predictions" / "yolov8s_640_100_s2_val.json.gz", "rt") as f:
        preds = json.load(f)
    by_image = {}
    for p in preds:
        by_image.setdefault(p["image_id"], []).append(p)
    arrays = []
    for image_id, ps in by_image.items():
        xywh = np.array([p["bbox"] for p in ps])
        arrays.append((np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], np.array([p["score"] for p in ps]),
                       np.array([p["category_id"] - 1 for p in ps]), image_id))
    fit = SizeBuckets.fit(gt.areas())
    t = time.perf_counter()
    results = [r for xyxy, s, c, i in arrays for r in to_coco_results(xyxy, s, c, i, gt.category_ids)]
    evaluate(gt, results, [fit])
    return time.perf_counter() - t, len(results)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-yolo-") as tmp:
        tmp = Path(tmp)
        data = convert(tmp / "data")
        commands = {"yolo": [YOLO], "smallbox yolo": [PY, "-m", "smallbox", "yolo"]}
        runs = {label: [] for label in commands}
        cpu = {label: [] for label in commands}
        trained = {label: [] for label in commands}
        for r in range(REPEATS):
            for label in (list(commands) if r % 2 == 0 else list(commands)[::-1]):  # alternate who goes first
                rows, seconds = train(commands[label], data, tmp / "runs", f"{label.replace(' ', '-')}-{r}")
                wall = epoch_times(rows)
                runs[label] += wall
                cpu[label].append(seconds)
                trained[label].append(losses(rows))
                print(f"  run {r + 1}/{REPEATS} {label:<14} epochs 2..{EPOCHS}: " + ", ".join(f"{t:.2f}s" for t in wall)
                      + f"; whole run {seconds:.1f} CPU s", flush=True)
    stock, ours = statistics.median(runs["yolo"]), statistics.median(runs["smallbox yolo"])
    print(f"per-epoch wall time (median, CPU, tiny model, 80 train / 200 val images at 160 px): "
          f"yolo {stock:.2f}s, smallbox yolo {ours:.2f}s, ratio {ours / stock:.3f} ({(ours / stock - 1) * 100:+.1f}%)")
    cpu_stock, cpu_ours = statistics.median(cpu["yolo"]), statistics.median(cpu["smallbox yolo"])
    print(f"CPU time of a whole {EPOCHS}-epoch run (median): yolo {cpu_stock:.1f}s, smallbox yolo {cpu_ours:.1f}s, "
          f"ratio {cpu_ours / cpu_stock:.3f} ({(cpu_ours / cpu_stock - 1) * 100:+.1f}%)")
    seconds, n = evaluation_cost()
    print(f"COCO evaluation at a realistic load (a trained YOLOv8s's {n} predictions on the 200 val images): "
          f"{seconds:.2f}s per validation")
    reference = trained["yolo"][0]
    differ = max((abs(a - b) for run in trained["yolo"] + trained["smallbox yolo"] for row, ref in zip(run, reference)
                  for a, b in zip(row, ref)), default=0.0)
    same_epochs = all(len(run) == len(reference) for run in trained["yolo"] + trained["smallbox yolo"])
    checks = [(f"training losses equal in every run ({', '.join(LOSSES)}: max |diff| {differ:.1e}, target <= 1e-4)",
               same_epochs and differ <= 1e-4),
              (f"smallbox yolo / yolo per-epoch wall time = {ours / stock:.3f} (target <= {MAX_OVERHEAD:.2f})",
               ours <= MAX_OVERHEAD * stock)]
    return report_checks("bench_yolo_train", checks)


if __name__ == "__main__":
    sys.exit(main())
