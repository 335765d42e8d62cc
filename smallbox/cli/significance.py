"""``smallbox significance GT.json A.json [A2.json ...] -- B.json [B2.json ...]``: is B better
than A, counting the test images and the training runs as sources of noise; with ``--plan
--delta D``, how many seeds per side would detect a difference of D."""

from __future__ import annotations

import argparse
import sys

from ..analysis.planning import format_plan, plan_from_result
from ..analysis.significance import DF_RULES, compare_runs, format_result
from ..datasets import load_coco
from ..datasets.manifest import size_buckets
from ..errors import SmallboxError
from ..fileio import write_json_atomic
from .options import add_size_options, number, output_file

USAGE = ("smallbox significance [options] GT.json A.json [A2.json ...] -- B.json [B2.json ...] [options]\n"
         "       smallbox significance --plan --delta 0.02 [--power 0.8] GT.json A.json A2.json ... -- B.json ...")


def _add_options(p):
    p.add_argument("--metric", default="AP_small",
                   help="AP, AP50, AP75 or AP_<range> of --areas (AP_small of coco, AP_tiny of aitod, ...)")
    add_size_options(p, max_dets=False)
    p.add_argument("--n", type=number(int, 10), default=1000, help="paired image resamples (at least 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the resampling")
    p.add_argument("--level", type=number(float, 0, 1, low_open=True), default=0.95,
                   help="confidence level of the interval, below 1")
    p.add_argument("--df", default="auto", choices=DF_RULES,
                   help="degrees of freedom of the t quantile: auto (Welch's run df with equal run counts, else Hsu's "
                        "min(n)-1, since Welch is liberal with unequal counts; either times total / run variance), "
                        "welch or hsu")
    p.add_argument("--plan", action="store_true",
                   help="also answer: how many seeds per side to detect --delta with --power (needs 2+ runs on a side)")
    p.add_argument("--delta", type=number(float, 0, low_open=True),
                   help="with --plan: the difference to detect, in the metric's units (0.02 = 2 AP points)")
    p.add_argument("--power", type=_power, default=0.8, help="with --plan: the power wanted, strictly between 0 and 1")
    p.add_argument("--json", metavar="OUT", type=output_file, help="also write every number to this json file")


def _power(text: str) -> float:
    """A power of 1 would need infinitely many seeds: (0, 1) only."""
    value = number(float, 0, 1, low_open=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text}: must be below 1 (a power of 1 needs infinitely many seeds)")
    return value


def add_arguments(p):
    p.usage = USAGE
    _add_options(p)
    # argparse drops "--" and takes every later token as positional: keep the raw tokens and
    # split them (and any options among them) in run().
    p.add_argument("files", nargs=argparse.REMAINDER,
                   help="GT.json, then one COCO results file per run of A, then --, then B's")


SEPARATOR = "\0--"


def split_sides(tokens: list[str], namespace=None) -> tuple[str, list[str], list[str]]:
    """``GT A.. -- B..`` with options anywhere -> ``(gt, a_files, b_files)``; the options are
    set on ``namespace``."""
    if "--" not in tokens:
        raise SmallboxError(f"separate A's and B's prediction files with --: {USAGE}")
    cut = tokens.index("--")
    parser = argparse.ArgumentParser(prog="smallbox significance", usage=USAGE)
    _add_options(parser)
    parser.add_argument("files", nargs="*")
    files = parser.parse_intermixed_args(tokens[:cut] + [SEPARATOR] + tokens[cut + 1:], namespace).files
    cut = files.index(SEPARATOR)
    before, after = files[:cut], files[cut + 1:]
    if len(before) < 2 or not after:
        raise SmallboxError(f"need GT.json, at least one A file and one B file: {USAGE}")
    return before[0], before[1:], after


def run(args) -> int:
    gt_path, a_files, b_files = split_sides(args.files, args)
    if args.plan and args.delta is None:
        raise SmallboxError("--plan needs --delta: the difference to detect, in the metric's units (e.g. --delta 0.02)")
    if args.delta is not None and not args.plan:
        raise SmallboxError("--delta is the planner's: add --plan")
    if args.plan and max(len(a_files), len(b_files)) < 2:
        raise SmallboxError("--plan needs 2+ runs on at least one side: one run per side says nothing of the seed spread")
    gt = load_coco(gt_path, check_files=False)
    from ..predictions.files import load_predictions, prediction_notes

    for path in [*a_files, *b_files]:
        for note in prediction_notes(load_predictions(path, [im["id"] for im in gt.images], gt.category_ids), path):
            print(f"note: {note}", file=sys.stderr)
    buckets, source = size_buckets(args.areas, gt_path, gt.areas())
    if source:
        print(f"size buckets {buckets.describe()}: {source}")
    res = compare_runs(gt, a_files, b_files, metric=args.metric, buckets=buckets, n=args.n, seed=args.seed,
                       level=args.level, df=args.df)
    print("A: " + " ".join(a_files))
    print("B: " + " ".join(b_files))
    print(format_result(res))
    out = {**res.to_dict(), "gt": gt_path, "a": a_files, "b": b_files, "seed": args.seed}
    if args.plan:
        plan = plan_from_result(res, args.delta, args.power)
        print(format_plan(plan, args.metric))
        out["plan"] = plan.to_dict()
    if args.json:
        write_json_atomic(out, args.json, indent=1)
        print(f"wrote {args.json}")
    return 0
