"""``smallbox report RUN_DIR [RUN_DIR ...]``: one table over training runs, seeds grouped."""

from __future__ import annotations

from ..analysis.report import build_report


def add_arguments(p):
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run folders (results.csv + smallbox.json or args.yaml)")
    p.add_argument("--out", default="report.md", help="markdown report; PNG plots are written beside it (default report.md)")
    p.add_argument("--csv", metavar="CSV", help="also write the table as CSV")
    p.add_argument("--metric", default="coco/AP",
                   help="results.csv column that picks each run's best epoch and that groups are tested on (default coco/AP)")
    p.add_argument("--last", action="store_true", help="use each run's last epoch instead of its best")
    p.add_argument("--gt", help="ground-truth COCO json of the val split (default: found through the runs' data)")
    p.add_argument("--n", type=int, default=1000, help="bootstrap resamples when groups are compared (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap")
    p.add_argument("--no-significance", action="store_true", help="do not test the groups against the first one")


def run(args) -> int:
    report = build_report(args.runs, args.out, args.csv, metric=args.metric, epoch="last" if args.last else "best",
                          gt=args.gt, n=args.n, seed=args.seed, significance=not args.no_significance)
    print(report["markdown"])
    for f in report["files"]:
        print(f"wrote {f}")
    return 0
