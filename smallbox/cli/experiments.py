"""``smallbox experiments run|status MATRIX.yaml``: run the arm x seed pairs of an experiment
matrix that the ledger does not have yet (docs/experiments.md). The whole matrix, the options and
the ledger and work folders are checked before anything is converted or trained."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SmallboxError
from .options import number, output_folder

DEFAULT_LEDGER = "experiments/ledger"
DEFAULT_WORK = "runs/experiments"


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="train, predict and score the pending pairs; one ledger entry per finished run",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("matrix", help="experiment matrix YAML (e.g. experiments/deeppcb.yaml)")
    run.add_argument("--only", nargs="+", metavar="ARM", help="only these arms (and the arms they build on)")
    run.add_argument("--budget", type=number(float, 0), metavar="MINUTES",
                     help="start no run whose estimated time (the ledger's median for the arm) ends past this budget")
    run.add_argument("--parallel", type=number(int, 1), default=1, help="runs at once (on one GPU, or on the CPU)")
    run.add_argument("--ray", metavar="ADDRESS", help="run each pair as a task of this Ray cluster (e.g. auto, ray://host:10001)")
    run.add_argument("--ray-gpus", type=number(float, 0), default=0.0, help="GPUs each Ray task asks for (0.25: four per GPU)")
    run.add_argument("--ledger", type=output_folder, default=DEFAULT_LEDGER, help="ledger root; entries go to LEDGER/<matrix name>/")
    run.add_argument("--work", type=output_folder, default=DEFAULT_WORK,
                     help="converted data and run folders go to WORK/<matrix name>/")
    run.add_argument("--device", help="Ultralytics device for every run (cpu, 0, 0,1; default: its own choice)")
    status = sub.add_parser("status", help="which pairs are in the ledger, which are pending, and their estimated time")
    status.add_argument("matrix")
    status.add_argument("--ledger", type=output_folder, default=DEFAULT_LEDGER)


def run(args) -> int:
    from ..experiments.ledger import Ledger
    from ..experiments.matrix import load_matrix
    from ..experiments.runner import Plan, RayExecutor, run_matrix
    from .options import check_device

    matrix = load_matrix(args.matrix).resolved(Path.cwd())
    ledger = Ledger(Path(args.ledger).absolute(), matrix.name)
    if getattr(args, "only", None):
        unknown = [a for a in args.only if a not in matrix.arms]
        if unknown:
            raise SmallboxError(f"{args.matrix}: no arm {unknown[0]!r} (arms: {', '.join(matrix.arms)})")
    if ledger.folder.exists() and not ledger.folder.is_dir():
        raise SmallboxError(f"--ledger {args.ledger}: {ledger.folder} is a file, not a ledger folder")
    if args.action == "status":
        return _status(matrix, ledger)
    check_device(args.device, "--device")
    work = Path(args.work).absolute() / matrix.name
    if work.exists() and not work.is_dir():
        raise SmallboxError(f"--work {args.work}: {work} is a file, not a folder")
    plan = Plan(matrix, ledger, work, Path.cwd(), args.device)
    executor = RayExecutor(args.ray, gpus=args.ray_gpus) if args.ray else None
    report = run_matrix(plan, args.only, args.budget, args.parallel, executor)
    print(f"done {len(report['done'])}, failed {len(report['failed'])}, not started {len(report['skipped'])}")
    for line in report["skipped"]:
        print(f"  not started: {line}")
    for line in report["failed"]:
        print(f"  failed: {line}")
    return 1 if report["failed"] else 0


def _status(matrix, ledger) -> int:
    from ..experiments.runner import Plan, estimate_minutes

    plan = Plan(matrix, ledger, Path(DEFAULT_WORK).absolute() / matrix.name, Path.cwd(), quiet=True)
    for arm, seed in matrix.pairs():
        entry, broken = ledger.get(arm, seed), ledger.problem(arm, seed)
        if entry:
            m, cpu = entry.data["metrics"], entry.data.get("cpu_seconds") or {}
            print(f"done     {arm:<24} seed {seed}  AP {m['AP']:.3f}  AP_small {m['AP_small']:.3f}  "
                  f"({sum(cpu.values()) / 60:.0f} CPU-min, {entry.data['scale']})")
        elif broken:
            print(f"broken   {arm:<24} seed {seed}  {broken} (`run` redoes it)")
        else:
            est = estimate_minutes(plan, matrix.arms[arm])
            print(f"pending  {arm:<24} seed {seed}" + (f"  about {est:.0f} min" if est else ""))
    return 0
