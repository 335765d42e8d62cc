"""``smallbox fix ANN.json --out FIXED.json``: repair what can be repaired, with a change log."""

from __future__ import annotations

from ..datasets.coco import DEFAULT_TOLERANCE
from ..datasets.repair import fix_coco


def add_arguments(p):
    p.add_argument("ann", metavar="ANN.json", help="COCO detection json (.json or .json.gz)")
    p.add_argument("--out", required=True, metavar="FIXED.json", help="repaired json to write (its change log goes beside it: FIXED.changes.json)")
    p.add_argument("--images", metavar="DIR",
                   help="image folder of the json: also checks every file and sets width/height swapped by EXIF orientation from it")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="PX",
                   help=f"clip boxes reaching outside their image by at most this many pixels (default {DEFAULT_TOLERANCE:g}); farther is an error")


def run(args) -> int:
    result = fix_coco(args.ann, args.out, args.images, args.tolerance)
    for repair, n in result.counts.items():
        print(f"{n:>8}  {repair}")
    total = sum(result.counts.values())
    print(f"wrote {result.out} ({total} change(s){'' if total else ': nothing to repair'}; log: {result.log})")
    return 0
