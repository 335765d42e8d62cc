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
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SmallboxError
from ..fileio import read_json, write_json_atomic
from ..predictions.images import IMAGE_IDS_ENV
from .ledger import FUSED, PREDICTIONS, WEIGHTS, Ledger, json_record
from .matrix import NO_SELECT, TILES_SPLIT, Arm, Matrix


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


@dataclass
class Costs:
    """Wall and CPU seconds of a run's phases (CPU: the subprocesses' user + system time, so a busy
    machine inflates wall time but hardly the CPU time a run needed)."""

    wall: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)

    def add(self, phase: str, wall: float, cpu: float) -> None:
        self.wall[phase] = round(self.wall.get(phase, 0.0) + wall, 1)
        self.cpu[phase] = round(self.cpu.get(phase, 0.0) + cpu, 1)


def run_pair(plan: Plan, arm_name: str, seed: int) -> dict:
    """Train (unless the arm is inference-only), predict the report split, score it and write
    the pair's ledger entry; returns the entry."""
    matrix, arm = plan.matrix, plan.matrix.arms[arm_name]
    _ROOT["root"] = str(plan.root)
    data = prepare_data(plan)
    run = f"{arm.name}-s{seed}"
    runs = plan.work / "runs"
    costs = Costs()
    folder = plan.ledger.entry_folder(arm.name, seed)
    if arm.train:
        checkpoint, trained = train_run(plan, arm, seed, data, runs / run, costs)
    else:
        checkpoint, trained = parent_checkpoint(plan, arm, seed)
    predictions, inference = predict_report(plan, arm, checkpoint, trained["imgsz"], runs / f"{run}-predict", costs)
    metrics, fused = score(plan, data, predictions, arm, seed)
    roles = {role: json_record(matrix.data[role], folder) if role != "select" or matrix.selects else NO_SELECT
             for role in ("train", "select", "report")}
    entry = {"matrix": matrix.name, "arm": arm.name, "seed": seed, "scale": matrix.scale, "about": arm.about,
             "settings": {**trained["settings"], "inference": inference, "evaluation": matrix.evaluation},
             "git": git_state(plan.root), "hardware": hardware(plan.device),
             "wall_seconds": costs.wall, "cpu_seconds": costs.cpu,
             "predict_ms_per_image": inference.pop("ms_per_image", None),
             "train_images_per_second": trained.get("images_per_second"), "epochs_done": trained.get("epochs_done", 0),
             "data": roles, "checkpoint": trained["checkpoint"], "metrics": metrics, "predictions": PREDICTIONS,
             "fused": fused["metrics"] if fused else None, "weights": None,
             "weights_mb": round(checkpoint.stat().st_size / 2**20, 1)}
    files = {PREDICTIONS: _gzip_copy(predictions)}
    if fused:
        files[FUSED] = _gzip_json(fused["preds"], runs / f"{run}-fused.json.gz")
    if arm.train and entry["weights_mb"] <= matrix.keep_weights_mb:
        files[WEIGHTS] = checkpoint
        entry["weights"] = WEIGHTS
    plan.ledger.write(arm.name, seed, entry, files)
    plan.log(f"ledger: {arm.name} seed {seed}: AP {metrics['AP']:.3f} AP_small {metrics['AP_small']:.3f} "
             f"(train {costs.cpu.get('train', 0) / 60:.1f} CPU-min)")
    return entry


def train_run(plan: Plan, arm: Arm, seed: int, data: Path, run: Path, costs: Costs) -> tuple[Path, dict]:
    """``smallbox yolo train`` of the pair: best.pt picked on the select split by the matrix's
    fitness, or (``select: none``) the last epoch's weights (no validation until the last epoch)."""
    matrix = plan.matrix
    args = {**arm.args, "seed": seed}
    model, pretrained_note = _model_and_weights(plan, arm, seed, args)
    data_yaml = data / (f"data-{arm.split}.yaml" if arm.split else "data.yaml")
    selection = [] if matrix.selects else ["val=False"]
    _smallbox(["yolo", "train", f"model={model}", f"data={data_yaml}", *_kv(args), *selection, *_device(plan),
               "deterministic=True", "plots=False", f"project={run.parent}", f"name={run.name}", "exist_ok=True"],
              run.parent / f"{run.name}.log", {"SMALLBOX_FITNESS": matrix.fitness}, costs=costs, phase="train")
    best = run / "weights" / "best.pt"
    if not best.is_file():
        raise SmallboxError(f"{run.name}: training ended without {best} (see {run.parent / f'{run.name}.log'})")
    epochs = _epochs_done(run)
    n_train = len(read_json(data / "annotations" / (f"train-{arm.split}.json" if arm.split else "train.json"))["images"])
    if matrix.selects:
        on = (" (whole images, sliced)" if arm.split == TILES_SPLIT else f" (its {arm.split} boxes)") if arm.split else ""
        how = {"selected_by": f"{matrix.fitness} on the select split{on}", "epoch": _best_epoch(run, matrix.fitness)}
    else:
        how = {"selected_by": "none: the last epoch of the fixed schedule", "epoch": epochs}
    settings = {"model": arm.model, "args": args, "split": arm.split, "init_from": arm.init_from,
                "fuse_with": arm.fuse_with, "fuse": arm.fuse or None, "pretrained": pretrained_note}
    return best, {"settings": settings, "imgsz": int(args.get("imgsz", 640)), "epochs_done": epochs,
                  "images_per_second": round(n_train * epochs / max(costs.wall.get("train", 0), 1e-9), 2),
                  "checkpoint": {"file": "best.pt", **how}}


def parent_checkpoint(plan: Plan, arm: Arm, seed: int) -> tuple[Path, dict]:
    """An inference-only arm's weights: the checkpoint its ``init_from`` arm chose, same seed, or
    the model file it names (a .pt, or an export: its imgsz from the metadata it carries)."""
    if not arm.init_from and arm.model:
        from ..adapters.yolo.metadata import read_metadata

        meta = read_metadata(Path(arm.model))
        settings = {"model": arm.model, "args": {}, "split": None, "init_from": None, "fuse_with": arm.fuse_with,
                    "fuse": arm.fuse or None, "pretrained": f"the model file {Path(arm.model).name}, not trained here"}
        return Path(arm.model), {"settings": settings, "imgsz": int(meta.get("imgsz") or 640),
                                 "checkpoint": {"file": Path(arm.model).name, "selected_by": "given (model:)", "epoch": None}}
    parent = plan.ledger.get(arm.init_from, seed)
    if parent is None:
        raise SmallboxError(f"{arm.name} seed {seed}: needs {arm.init_from} seed {seed} in the ledger first")
    weights = parent.weights or plan.work / "runs" / f"{arm.init_from}-s{seed}" / "weights" / "best.pt"
    if not Path(weights).is_file():
        raise SmallboxError(f"{arm.name} seed {seed}: the checkpoint of {arm.init_from} seed {seed} is neither in the "
                            f"ledger nor at {weights}")
    settings = {"model": None, "args": {}, "split": None, "init_from": arm.init_from, "fuse_with": arm.fuse_with,
                "fuse": arm.fuse or None, "pretrained": f"{arm.init_from} seed {seed}'s checkpoint, not trained further"}
    parent_args = (parent.data.get("settings") or {}).get("args") or {}
    how = {"file": f"{arm.init_from}/seed{seed}/best.pt", "selected_by": f"{arm.init_from}: {parent.selected_by}",
           "epoch": (parent.data.get("checkpoint") or {}).get("epoch")}
    return Path(weights), {"settings": settings, "imgsz": int(parent_args.get("imgsz", 640)), "checkpoint": how}


def predict_report(plan: Plan, arm: Arm, checkpoint: Path, trained_imgsz: int, out: Path, costs: Costs) -> tuple[Path, dict]:
    """The checkpoint's predictions on the report split (original ids from the report json):
    ``smallbox yolo predict`` at the training size or the arm's ``predict.imgsz``, or
    ``smallbox slice`` with the arm's ``predict.slice`` options."""
    e, report = plan.matrix.evaluation, plan.matrix.data["report"]
    predictions = out / "predictions.json"
    if "slice" in arm.predict:
        options = arm.predict["slice"]
        flags = [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
                 for k, v in options.items() if v is not False]
        _smallbox(["slice", str(checkpoint), "--images", plan.matrix.data["images"], "--gt", report,
                   "--out", str(predictions), f"--conf={e['conf']}", f"--iou={e['iou']}", *flags,
                   *([f"--device={plan.device}"] if plan.device else [])],
                  out.parent / f"{out.name}.log", costs=costs, phase="predict")
        inference = {"how": "smallbox slice", "slice": dict(options), "trained_imgsz": trained_imgsz}
    else:
        imgsz = int(arm.predict.get("imgsz", trained_imgsz))
        _smallbox(["yolo", "predict", f"model={checkpoint}", f"source={report_images(plan)}", f"imgsz={imgsz}",
                   f"conf={e['conf']}", f"iou={e['iou']}", f"max_det={e['max_det']}", *_device(plan), "save=False",
                   "verbose=False", f"project={out.parent}", f"name={out.name}", "exist_ok=True"],
                  out.parent / f"{out.name}.log", {IMAGE_IDS_ENV: report}, costs=costs, phase="predict")
        inference = {"how": "smallbox yolo predict", "imgsz": imgsz, "trained_imgsz": trained_imgsz}
    inference["ms_per_image"] = _ms_per_image(out.parent / f"{out.name}.log")
    return predictions, inference


def _ms_per_image(log: Path) -> float | None:
    """The predicting command's own timing line (model loading left out)."""
    from ..predictions.speed import ms_per_image

    return ms_per_image(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else None


def _best_epoch(run: Path, fitness: str) -> int | None:
    """The epoch best.pt comes from: the last row reaching the best value of the fitness column
    (Ultralytics overwrites best.pt on a tie)."""
    import csv

    path = run / "results.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    column = fitness if rows and fitness in rows[0] else None
    if column is None:
        return None
    values = [float(r[column]) for r in rows]
    best = max(values)
    return max(i for i, v in enumerate(values) if v == best) + 1


def _model_and_weights(plan: Plan, arm: Arm, seed: int, args: dict) -> tuple[str, str]:
    """The model= of a run and what its weights start from (said in the entry)."""
    if arm.init_from:
        checkpoint, _ = parent_checkpoint(plan, arm, seed)
        return str(checkpoint), f"fine-tuned from {arm.init_from} seed {seed}"
    if arm.pretrained:
        from ..adapters.timm_features import find_weights_file

        found = find_weights_file(arm.pretrained)
        if found is not None:
            args["pretrained"] = str(found)
            return arm.model, f"backbone from {found.name}"
        return arm.model, f"random init ({arm.pretrained} not found)"
    return arm.model, "random init"


def score(plan: Plan, data: Path, predictions: Path, arm: Arm, seed: int) -> tuple[dict, dict | None]:
    """COCO metrics of the predictions on the report split (COCO's and the dataset's fitted
    buckets), and, for a specialist, of its fusion with its partner's run of the same seed."""
    from ..datasets import SizeBuckets, load_coco
    from ..datasets.manifest import load_manifest
    from ..evaluate import evaluate
    from ..fusion.ensemble import ensemble_predictions
    from ..fusion.members import specialist_gates
    from ..predictions import load_predictions

    gt = load_coco(plan.matrix.data["report"], check_files=False)
    buckets = [b for b in load_manifest(data / "data.yaml").buckets if b.name != "coco"]
    preds = load_predictions(predictions, [im["id"] for im in gt.images], gt.category_ids)
    max_dets = int(plan.matrix.evaluation["max_det"])  # predict's limit per image is also the evaluator's
    metrics = _summary(evaluate(gt, preds, buckets, max_dets=max_dets))
    if not arm.fuse_with:
        return metrics, None
    partner = plan.ledger.get(arm.fuse_with, seed)
    if partner is None:
        raise SmallboxError(f"{arm.name} seed {seed}: fused with {arm.fuse_with} seed {seed}, which the ledger lacks")
    method, gate = arm.fuse.get("method", "wbf"), arm.fuse.get("gate")
    # the specialist first: with a gate it gives the boxes in its range, the partner the rest
    gates = specialist_gates(gate, 2, SizeBuckets.coco()) if gate else None
    fused = ensemble_predictions([preds, load_predictions(partner.predictions)], gt.images, method, gates=gates)
    return metrics, {"metrics": {"method": method, "with": arm.fuse_with, "gate": gate,
                                 **_summary(evaluate(gt, fused, buckets, max_dets=max_dets))}, "preds": fused}


def _summary(result: dict) -> dict:
    keys = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_100")
    out = {k: round(float(result[k]), 6) for k in keys}
    out["buckets"] = {name: {k: round(float(v), 6) if not isinstance(v, list) else v for k, v in b.items()}
                      for name, b in result["buckets"].items()}
    return out


def prepare_data(plan: Plan) -> Path:
    """The converted dataset of the matrix (``smallbox convert``, once per data section): train
    with the select split as its val (which picks best.pt); without a select split, the train
    json stands in as val, only for Ultralytics' one validation after the last epoch."""
    folder = plan.work / "data"
    stamp = folder / ".smallbox-experiment-data.json"
    wanted = json.dumps(plan.matrix.data, sort_keys=True)
    with _DATA_LOCK:
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
            return folder
        d = plan.matrix.data
        val = d["select"] if plan.matrix.selects else d["train"]
        # --overwrite: the stamp above decides whether the folder holds this matrix's data
        cmd = ["convert", d["train"], "--images", d["images"], "--val", val, "--out", str(folder), "--overwrite"]
        for split in d.get("splits", []):
            cmd += ["--split", str(split)]
        if d.get("tiles"):
            cmd += ["--tiles", str(d["tiles"])]
        for spec in d.get("areas", []):
            cmd += ["--areas", str(spec)]
        plan.work.mkdir(parents=True, exist_ok=True)
        _smallbox(cmd, plan.work / "convert.log")
        stamp.write_text(wanted, encoding="utf-8")
    return folder


def report_images(plan: Plan) -> Path:
    """A folder holding exactly the report json's images, so that ``yolo predict`` runs on them
    alone; their ids come from the report json."""
    from ..datasets import load_coco
    from ..predictions.images import linked_image_folder

    with _DATA_LOCK:
        gt = load_coco(plan.matrix.data["report"], check_files=False)
        return linked_image_folder(gt, plan.matrix.data["images"], plan.work / "report-images")


# ---------------------------------------------------------------------------------------------
# Subprocesses and the facts an entry records


def _smallbox(args: list[str], log: Path, env: dict | None = None, costs: Costs | None = None,
              phase: str = "") -> None:
    """``python -m smallbox ARGS``, output to ``log``; a failure names the log. With ``costs``,
    the command's wall and CPU seconds (its own and its children's) are added to ``phase``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smallbox", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=_ROOT.get("root"))
        with _LOCK:
            _RUNNING.add(proc)
        try:
            code, cpu = _wait(proc)
        finally:
            with _LOCK:
                _RUNNING.discard(proc)
    if costs is not None:
        costs.add(phase, time.time() - start, cpu)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise SmallboxError(f"`smallbox {' '.join(args[:2])}` failed (exit {code}); log {log}:\n  " + "\n  ".join(tail))


def _wait(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for the process; its exit code and CPU seconds (user + system, children included:
    ``wait4`` reports the reaped process's own usage, which counts the children it waited for)."""
    if not hasattr(os, "wait4"):
        return proc.wait(), 0.0
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:  # reaped elsewhere
            return proc.wait(), 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


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
    walls = [sum(e.data["wall_seconds"].values()) / 60 for e in plan.ledger.entries(skip_broken=True)
             if e.arm == arm.name and e.data.get("scale") == plan.matrix.scale]
    return statistics.median(walls) if walls else arm.estimate_minutes


def run_matrix(plan: Plan, only=None, budget_minutes: float | None = None, parallel: int = 1, executor=None) -> dict:
    """Run every pending pair (``only``: these arms and what they depend on), ``parallel`` at once,
    none started past the budget. Returns ``{"done": [...], "failed": [...], "skipped": [...]}``."""
    if parallel < 1:
        raise SmallboxError(f"--parallel must be at least 1, got {parallel}")
    for arm, seed in plan.matrix.pairs(only):
        why = plan.ledger.problem(arm, seed)
        if why:
            moved = plan.ledger.set_aside(arm, seed)
            plan.log(f"not a whole entry, run again: {arm} seed {seed}: {why} (moved to {moved.name})")
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
            about = f"about {estimate:.0f} min" if estimate is not None else "no time estimate"
            report["skipped"].append(f"{pair[0]} seed {pair[1]}: {about}, past the budget")
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

