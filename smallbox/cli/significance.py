"""``smallbox significance GT.json A.json [A2.json ...] -- B.json [B2.json ...]``: is B better
than A, counting the test images and the training runs as sources of noise."""

from __future__ import annotations

import argparse

from ..datasets import load_coco
from ..datasets.manifest import size_buckets
from ..errors import SmallboxError
from ..analysis.significance import bootstrap_difference, format_result
from ..evaluate.matching import METRICS
from ..fileio import write_json_atomic

USAGE = "smallbox significance [options] GT.json A.json [A2.json ...] -- B.json [B2.json ...] [options]"


def _add_options(p):
    p.add_argument("--metric", default="AP_small", choices=list(METRICS),
                   help="COCO metric to compare (size metrics use --areas; default AP_small)")
    p.add_argument("--areas", default="coco",
                   help="size buckets of AP_small/medium/large: coco, fit (the dataset's: recorded by smallbox convert for a "
                        "converted dataset's json, else tertiles of the ground truth's areas) or A,B in px²")
    p.add_argument("--n", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the resampling")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the interval (default 0.95)")
    p.add_argument("--json", metavar="OUT", help="also write the result to this json file")


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
    if args.n < 10:
        raise SmallboxError(f"--n {args.n}: need at least 10 resamples")
    if not 0 < args.level < 1:
        raise SmallboxError(f"--level {args.level}: must be between 0 and 1, e.g. 0.95")
    gt = load_coco(gt_path, check_files=False)
    buckets, source = size_buckets(args.areas, gt_path, gt.areas())
    if source:
        print(f"size buckets {buckets.describe()}: {source}")
    res = bootstrap_difference(gt, a_files, b_files, metric=args.metric, buckets=buckets, n=args.n,
                               seed=args.seed, level=args.level)
    print("A: " + " ".join(a_files))
    print("B: " + " ".join(b_files))
    print(format_result(res))
    if args.json:
        write_json_atomic({**res.to_dict(), "gt": gt_path, "a": a_files, "b": b_files}, args.json)
        print(f"wrote {args.json}")
    return 0
