"""``smallbox report RUN_DIR [RUN_DIR ...]``: one table over training runs, seeds grouped, each
group tested against a baseline; ``smallbox report --ledger DIR``: the same for an experiment
ledger, one row per arm (docs/results.md)."""

from __future__ import annotations

from pathlib import Path

from ..analysis.significance import DF_RULES
from ..errors import SmallboxError
from .options import number, output_file, refuse_output_onto_inputs


def add_arguments(p):
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="training run folders (results.csv + smallbox.json or args.yaml); other folders (an Ultralytics "
                        "val or predict folder) are skipped with a note")
    p.add_argument("--ledger", metavar="DIR", help="report an experiment ledger (smallbox experiments run) instead of run folders")
    p.add_argument("--out", default="report.md", type=output_file,
                   help="markdown report; PNG plots are written beside it")
    p.add_argument("--csv", metavar="CSV", type=output_file, help="also write the table as CSV")
    p.add_argument("--report-split", metavar="JSON",
                   help="run folders: a COCO json that neither trained nor picked any run's checkpoint; each run's best.pt "
                        "is predicted and scored on it (and the groups tested on it). Without it: each run's last epoch, "
                        "untested")
    p.add_argument("--images", metavar="DIR", help="with --report-split: the folder its file_name entries are relative to")
    p.add_argument("--metric",
                   help="metric the groups are tested on; default coco/AP for run folders, coco/AP_small for --ledger")
    p.add_argument("--baseline", metavar="NAME",
                   help="the group every other is tested against: a run folder's name (default: the first run's group), "
                        "or with --ledger an arm (default: the matrix's baseline:)")
    p.add_argument("--matrix", metavar="YAML", help="with --ledger: the matrix file whose baseline: to use "
                                                    "(default: experiments/<matrix name>.yaml beside the ledger, if there)")
    p.add_argument("--gt", help="run folders without --report-split: the val ground truth shown for every run (default: each "
                                "run's smallbox.json val)")
    p.add_argument("--n", type=number(int, 10), default=1000, help="paired image resamples of the test")
    p.add_argument("--seed", type=int, default=0, help="random seed of the resampling")
    p.add_argument("--level", type=number(float, 0, 1, low_open=True), default=0.95, help="confidence level of the intervals")
    p.add_argument("--df", default="auto", choices=DF_RULES, help="degrees of freedom of the test (see smallbox significance)")
    p.add_argument("--no-significance", action="store_true", help="do not test the groups against the baseline")


def run(args) -> int:
    if args.ledger and args.runs:
        raise SmallboxError("give run folders or --ledger DIR, not both")
    inputs = [p for root in [*(args.runs or []), *([args.ledger] if args.ledger else [])] if Path(root).is_dir()
              for p in Path(root).rglob("*") if p.is_file()]
    refuse_output_onto_inputs([args.out, args.csv], inputs + [args.report_split, args.gt], "report")
    if args.ledger:
        from ..analysis.ledger_report import build_ledger_report

        if args.gt or args.report_split:
            raise SmallboxError("--gt and --report-split are for run folders: a ledger entry records its splits and its model")
        report = build_ledger_report(args.ledger, args.out, args.csv, metric=args.metric or "coco/AP_small",
                                     baseline=args.baseline, matrix=args.matrix, n=args.n, seed=args.seed,
                                     level=args.level, df=args.df, significance=not args.no_significance)
    else:
        from ..analysis.report import build_report

        if not args.runs:
            raise SmallboxError("give training run folders (e.g. runs/yolo/*) or --ledger DIR")
        if args.matrix:
            raise SmallboxError("--matrix is for --ledger")
        report = build_report(args.runs, args.out, args.csv, metric=args.metric or "coco/AP", gt=args.gt, n=args.n,
                              seed=args.seed, significance=not args.no_significance, baseline=args.baseline,
                              level=args.level, df=args.df, report_split=args.report_split, images=args.images)
    print(report["markdown"])
    for f in report["files"]:
        print(f"wrote {f}")
    return 0
