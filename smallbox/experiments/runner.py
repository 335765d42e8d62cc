"""Run the pairs (arm, seed) of a matrix that the ledger does not have yet.

Each pair is a short pipeline of smallbox's own commands, run as subprocesses so that a run can be
stopped cleanly and Ultralytics' process-wide state never leaks from one run into the next:
``smallbox yolo train`` -> ``smallbox yolo predict`` of best.pt on the val split (the converted
split folder gives the original image ids) -> :func:`smallbox.evaluate.evaluate` -> one ledger
entry. ``N`` pairs run at once (``--parallel``: one GPU can hold several small trainings), on this
machine or, with ``--ray ADDRESS``, as tasks of an existing Ray cluster (the engine Ultralytics'
own tuner uses); every task writes its own entry, on a file system all nodes share.

A time budget stops new runs from starting when the run's estimated time (the median of the
ledger's earlier runs of that arm at that scale, else the arm's ``estimate_minutes``) would end
past it; a run already going is left to finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import read_json, write_json_atomic
from .ledger import FUSED, PREDICTIONS, WEIGHTS, Ledger, val_record
from .matrix import Arm, Matrix

_RUNNING: set = set()  # subprocesses of this process, stopped on an interrupt
_LOCK = threading.Lock()
_DATA_LOCK = threading.Lock()  # one conversion at a time; never held while _LOCK is wanted elsewhere
_ROOT: dict = {}  # the folder subprocesses start in (set by run_pair from its plan)


@dataclass
class Plan:
    """Where a matrix's work goes."""

    matrix: Matrix       # with absolute paths (matrix.resolved()): Ray workers run elsewhere
    ledger: Ledger
    work: Path           # converted data and run folders (absolute)
    root: Path           # the repository / current folder the runs start from
    device: str | None = None
    quiet: bool = False

    def log(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


# ---------------------------------------------------------------------------------------------
# One pair


def run_pair(plan: Plan, arm_name: str, seed: int) -> dict:
    """Train, predict, score one (arm, seed) and write its ledger entry; returns the entry."""
    matrix, arm = plan.matrix, plan.matrix.arms[arm_name]
    _ROOT["root"] = str(plan.root)
    data = prepare_data(plan)
    run = f"{arm.name}-s{seed}"
    runs = plan.work / "runs"
    args = {**arm.args, "seed": seed}
    settings = {"model": arm.model, "args": args, "split": arm.split, "init_from": arm.init_from,
                "fuse_with": arm.fuse_with, "pretrained": None, "evaluation": matrix.evaluation}
    model, pretrained_note = _model_and_weights(plan, arm, seed, args)
    settings["pretrained"] = pretrained_note
    data_yaml = data / (f"data-{arm.split}.yaml" if arm.split else "data.yaml")
    start = time.time()
    _smallbox(["yolo", "train", f"model={model}", f"data={data_yaml}", *_kv(args), *_device(plan),
               "deterministic=True", "plots=False", f"project={runs}", f"name={run}", "exist_ok=True"],
              runs / f"{run}.log", {"SMALLBOX_FITNESS": matrix.fitness})
    train_seconds = time.time() - start
    best = runs / run / "weights" / "best.pt"
    if not best.is_file():
        raise SmallboxError(f"{run}: training ended without {best} (see {runs / f'{run}.log'})")
    start = time.time()
    e = matrix.evaluation
    _smallbox(["yolo", "predict", f"model={best}", f"source={data / 'images' / 'val'}", f"imgsz={args.get('imgsz', 640)}",
               f"conf={e['conf']}", f"iou={e['iou']}", f"max_det={e['max_det']}", *_device(plan), "save=False",
               "verbose=False", f"project={runs}", f"name={run}-predict", "exist_ok=True"], runs / f"{run}-predict.log")
    predict_seconds = time.time() - start
    predictions = runs / f"{run}-predict" / "predictions.json"
    metrics, fused = score(plan, data, predictions, arm, seed)
    n_train = len(read_json(data / "annotations" / (f"train-{arm.split}.json" if arm.split else "train.json"))["images"])
    epochs = _epochs_done(runs / run)
    entry = {"matrix": matrix.name, "arm": arm.name, "seed": seed, "scale": matrix.scale, "about": arm.about,
             "settings": settings, "git": git_state(plan.root), "hardware": hardware(plan.device),
             "wall_seconds": {"train": round(train_seconds, 1), "predict": round(predict_seconds, 1)},
             "train_images_per_second": round(n_train * epochs / max(train_seconds, 1e-9), 2), "epochs_done": epochs,
             **val_record(matrix.data["val"], plan.ledger.entry_folder(arm.name, seed)), "metrics": metrics,
             "predictions": PREDICTIONS,
             "fused": fused["metrics"] if fused else None, "weights": None, "weights_mb": round(best.stat().st_size / 2**20, 1)}
    files = {PREDICTIONS: _gzip_copy(predictions)}
    if fused:
        files[FUSED] = _gzip_json(fused["preds"], runs / f"{run}-fused.json.gz")
    if entry["weights_mb"] <= matrix.keep_weights_mb:
        files[WEIGHTS] = best
        entry["weights"] = WEIGHTS
    plan.ledger.write(arm.name, seed, entry, files)
    plan.log(f"ledger: {arm.name} seed {seed}: AP {metrics['AP']:.3f} AP_small {metrics['AP_small']:.3f} "
             f"({train_seconds / 60:.1f} min)")
    return entry


def _model_and_weights(plan: Plan, arm: Arm, seed: int, args: dict) -> tuple[str, str]:
    """The model= of a run and what its weights start from (said in the entry)."""
    if arm.init_from:
        source = plan.ledger.get(arm.init_from, seed)
        best = (source.weights if source else None) or plan.work / "runs" / f"{arm.init_from}-s{seed}" / "weights" / "best.pt"
        if not Path(best).is_file():
            raise SmallboxError(f"{arm.name} seed {seed}: needs best.pt of {arm.init_from} seed {seed}, which is not there")
        return str(best), f"fine-tuned from {arm.init_from} seed {seed}"
    if arm.pretrained:
        from ..adapters.timm_features import find_weights_file

        found = find_weights_file(arm.pretrained)
        if found is not None:
            args["pretrained"] = str(found)
            return arm.model, f"backbone from {found.name}"
        return arm.model, f"random init ({arm.pretrained} not found)"
    return arm.model, "random init"


def score(plan: Plan, data: Path, predictions: Path, arm: Arm, seed: int) -> tuple[dict, dict | None]:
    """COCO metrics of the predictions on the full val split (COCO's and the dataset's fitted
    buckets), and, for a specialist, of its WBF fusion with its partner's run of the same seed."""
    from ..datasets import load_coco
    from ..datasets.manifest import load_manifest
    from ..evaluate import evaluate
    from ..fusion.ensemble import ensemble_predictions
    from ..predictions import load_predictions

    gt = load_coco(data / "annotations" / "val.json", check_files=False)
    buckets = [b for b in load_manifest(data / "data.yaml").buckets if b.name != "coco"]
    preds = load_predictions(predictions, [im["id"] for im in gt.images], gt.category_ids)
    metrics = _summary(evaluate(gt, preds, buckets))
    if not arm.fuse_with:
        return metrics, None
    partner = plan.ledger.get(arm.fuse_with, seed)
    if partner is None:
        raise SmallboxError(f"{arm.name} seed {seed}: fused with {arm.fuse_with} seed {seed}, which the ledger lacks")
    fused = ensemble_predictions([load_predictions(partner.predictions), preds], gt.images, "wbf")
    return metrics, {"metrics": {"method": "wbf", "with": arm.fuse_with, **_summary(evaluate(gt, fused, buckets))},
                     "preds": fused}


def _summary(result: dict) -> dict:
    keys = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_100")
    out = {k: round(float(result[k]), 6) for k in keys}
    out["buckets"] = {name: {k: round(float(v), 6) if not isinstance(v, list) else v for k, v in b.items()}
                      for name, b in result["buckets"].items()}
    return out


def prepare_data(plan: Plan) -> Path:
    """The converted dataset of the matrix (``smallbox convert``, once per data section)."""
    folder = plan.work / "data"
    stamp = folder / ".smallbox-experiment-data.json"
    wanted = json.dumps(plan.matrix.data, sort_keys=True)
    with _DATA_LOCK:
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
            return folder
        d = plan.matrix.data
        cmd = ["convert", d["train"], "--images", d["images"], "--val", d["val"], "--out", str(folder)]
        for split in d.get("splits", []):
            cmd += ["--split", str(split)]
        plan.work.mkdir(parents=True, exist_ok=True)
        _smallbox(cmd, plan.work / "convert.log")
        stamp.write_text(wanted, encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------
# Subprocesses and the facts an entry records


def _smallbox(args: list[str], log: Path, env: dict | None = None) -> None:
    """``python -m smallbox ARGS``, output to ``log``; a failure names the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smallbox", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=_ROOT.get("root"))
        with _LOCK:
            _RUNNING.add(proc)
        try:
            code = proc.wait()
        finally:
            with _LOCK:
                _RUNNING.discard(proc)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise SmallboxError(f"`smallbox {' '.join(args[:2])}` failed (exit {code}); log {log}:\n  " + "\n  ".join(tail))


def stop_running() -> None:
    """Terminate this process's runs (on Ctrl-C): their folders stay, no entry is written."""
    with _LOCK:
        for proc in list(_RUNNING):
            proc.terminate()


def _kv(args: dict) -> list[str]:
    return [f"{k}={v}" for k, v in args.items()]


def _device(plan: Plan) -> list[str]:
    return [f"device={plan.device}"] if plan.device else []


def _epochs_done(run: Path) -> int:
    path = run / "results.csv"
    return max(0, len(path.read_text(encoding="utf-8").strip().splitlines()) - 1) if path.is_file() else 0


def _gzip_copy(path: Path) -> Path:
    return _gzip_json(read_json(path), path.with_suffix(".json.gz"))


def _gzip_json(obj, path: Path) -> Path:
    return write_json_atomic(obj, path)


def git_state(root: Path) -> dict:
    """The commit the code was at, and whether the working tree had changes."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30, cwd=root).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def hardware(device: str | None) -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and device not in ("cpu",) else None
    return {"gpu": gpu, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------
# Many pairs: order, dependencies, budget, parallel slots


def estimate_minutes(plan: Plan, arm: Arm) -> float | None:
    """Median wall time of this arm's earlier runs at this scale, else the arm's own estimate."""
    walls = [sum(e.data["wall_seconds"].values()) / 60 for e in plan.ledger.entries()
             if e.arm == arm.name and e.data.get("scale") == plan.matrix.scale]
    return statistics.median(walls) if walls else arm.estimate_minutes


def run_matrix(plan: Plan, only=None, budget_minutes: float | None = None, parallel: int = 1, executor=None) -> dict:
    """Run every pending pair (``only``: these arms and what they depend on), ``parallel`` at once,
    none started past the budget. Returns ``{"done": [...], "failed": [...], "skipped": [...]}``."""
    if parallel < 1:
        raise SmallboxError(f"--parallel must be at least 1, got {parallel}")
    pending = [p for p in plan.matrix.pairs(only) if not plan.ledger.has(*p)]
    deadline = time.time() + budget_minutes * 60 if budget_minutes is not None else None
    _ROOT["root"] = str(plan.root)
    prepare_data(plan)  # once, before the slots start
    own_pool = executor is None
    executor = executor or cf.ThreadPoolExecutor(max_workers=parallel)
    running: dict = {}
    report = {"done": [], "failed": [], "skipped": []}
    plan.log(f"{len(pending)} run(s) pending in {plan.ledger.folder}" + (f", budget {budget_minutes:g} min" if deadline else ""))
    try:
        while pending or running:
            started = _start_ready(plan, pending, running, executor, parallel, deadline, report)
            if not running:
                report["skipped"] += [f"{a} seed {s}" for a, s in pending]
                break
            if not started or len(running) >= parallel or not pending:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    pair = running.pop(future)
                    try:
                        future.result()
                        report["done"].append(f"{pair[0]} seed {pair[1]}")
                    except SmallboxError as e:
                        report["failed"].append(f"{pair[0]} seed {pair[1]}: {e}")
                        plan.log(f"failed: {pair[0]} seed {pair[1]}: {e}")
    except KeyboardInterrupt:
        stop_running()
        raise
    finally:
        if own_pool:
            executor.shutdown(wait=True, cancel_futures=True)
    return report


def _start_ready(plan, pending, running, executor, parallel, deadline, report) -> bool:
    """Start pending pairs whose dependencies are in the ledger, while slots and budget allow."""
    started = False
    for pair in list(pending):
        if len(running) >= parallel:
            break
        arm = plan.matrix.arms[pair[0]]
        deps = [(d, pair[1]) for d in arm.depends_on]
        if any(d in pending or d in running.values() for d in deps):
            continue
        pending.remove(pair)
        if not all(plan.ledger.has(*d) for d in deps):
            report["skipped"].append(f"{pair[0]} seed {pair[1]}: needs {', '.join(f'{d} seed {s}' for d, s in deps)} first")
            continue
        estimate = estimate_minutes(plan, arm)
        if deadline is not None and time.time() + (estimate or 0) * 60 > deadline:
            report["skipped"].append(f"{pair[0]} seed {pair[1]}: about {estimate:.0f} min, past the budget")
            continue
        plan.log(f"start: {pair[0]} seed {pair[1]}" + (f" (about {estimate:.0f} min)" if estimate else ""))
        running[executor.submit(run_pair, plan, *pair)] = pair
        started = True
    return started


class RayExecutor:
    """Pairs as tasks of an existing Ray cluster (``ray.init(address)``), each asking for
    ``gpus`` GPUs (a fraction lets several share one) and ``cpus`` CPUs. ``submit`` returns a
    ``concurrent.futures.Future``, so :func:`run_matrix` schedules them like local slots."""

    def __init__(self, address: str, gpus: float = 0.0, cpus: float = 1.0):
        try:
            import ray
        except ImportError:
            raise SmallboxError("--ray needs Ray: pip install 'smallbox[ray]' (or pip install ray)") from None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report
        local = address == "local"
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                 **({"include_dashboard": False} if local else {}))
        self._task = ray.remote(num_gpus=gpus, num_cpus=cpus, max_retries=0)(run_pair)

    def submit(self, fn, *args) -> cf.Future:
        return self._task.remote(*args).future()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass

