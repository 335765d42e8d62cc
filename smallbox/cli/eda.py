"""``smallbox eda ANN.json --out DIR``: box-size analysis (histograms, bucket counts, fitted
thresholds) of whatever in the file is usable, with a table of every problem found."""

from __future__ import annotations

import argparse
import sys

from ..datasets.coco import DEFAULT_TOLERANCE, inspect_coco
from ..datasets.eda import format_terminal, run_eda
from .options import AREAS_HELP


def add_arguments(p):
    p.add_argument("ann", help="COCO detection json (.json or .json.gz)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder for the PNGs, summary.json and summary.md (new, empty, or an earlier EDA output)")
    p.add_argument("--areas", default="coco",
                   help="size ranges to show next to COCO's and the fitted ones, and to pick sample crops by; " + AREAS_HELP)
    p.add_argument("--buckets", dest="areas", help=argparse.SUPPRESS)  # the older name
    p.add_argument("--images", metavar="DIR",
                   help="image folder of the json: checks every file and its width/height as Ultralytics loads it (EXIF applied), adds sample_crops.png")
    p.add_argument("--imgsz", type=int, default=640,
                   help="training image size: reports box sides after the letterbox resize to it (default 640)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="PX",
                   help=f"boxes reaching outside their image by at most this many pixels are analysed clipped, as smallbox fix clips them; "
                        f"farther ones are set aside (default {DEFAULT_TOLERANCE:g})")


def run(args) -> int:
    dataset = inspect_coco(args.ann, image_root=args.images, tolerance=args.tolerance)
    for warning in dataset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    summary = run_eda(dataset, args.out, buckets=args.areas, imgsz=args.imgsz)
    print(format_terminal(summary))
    print(f"wrote {args.out}/: summary.md, summary.json and {len(summary['plots'])} plots")
    return 0
