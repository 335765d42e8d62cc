"""``smallbox eval GT.json PRED.json``: COCO AP / AR by size."""

from __future__ import annotations

import sys

from ..datasets import load_coco
from ..datasets.manifest import size_buckets
from ..evaluate import evaluate
from ..fileio import read_json, write_json_atomic
from ..predictions.files import load_predictions, only_ground_truth_images, prediction_notes
from ..predictions.images import check_folder_numbering
from ..evaluate.cocoeval import cut_message
from ..evaluate.table import format_metrics
from .options import add_size_options, max_dets_for


def add_arguments(p):
    p.add_argument("gt", help="ground-truth COCO json")
    p.add_argument("pred", help="COCO results json (.json or .json.gz)")
    add_size_options(p)
    p.add_argument("--per-class", action="store_true", help="also AP, AP50 and AP by size per class")
    p.add_argument("--backend", choices=("faster", "pycocotools"), default="faster",
                   help="faster-coco-eval (default) or pycocotools: the same numbers")
    p.add_argument("--subset", action="store_true",
                   help="score only the ground truth's images: predictions of a whole set against a split's json "
                        "(those on other images are left out, said)")
    p.add_argument("--json", metavar="OUT", help="write the metrics to this json file")


def run(args) -> int:
    gt = load_coco(args.gt, check_files=False)
    buckets, source = size_buckets(args.areas, args.gt, gt.areas())
    image_ids = [im["id"] for im in gt.images]
    check_folder_numbering(args.pred, gt.images)
    preds = read_json(args.pred)
    if args.subset and isinstance(preds, list):
        kept, left_out = only_ground_truth_images(preds, image_ids)
        if preds and not kept:  # none on these images: the wrong dataset, said as such
            load_predictions(preds, image_ids, gt.category_ids, name=args.pred)
        preds = kept
        print(f"--subset: scored the ground truth's {len(image_ids):,} images; left out {left_out['predictions']:,} "
              f"predictions on {left_out['images']:,} other image(s)", file=sys.stderr)
    preds = load_predictions(preds, image_ids, gt.category_ids, name=args.pred, subset_option="--subset")
    for note in prediction_notes(preds, args.pred) + gt.warnings:
        print(f"note: {note}", file=sys.stderr)
    result = evaluate(gt, preds, buckets, backend=args.backend, per_class=args.per_class, max_dets=max_dets_for(args))
    print(format_metrics(result, f"{args.pred} vs {args.gt} ({args.backend})"))
    if cut_message(result):
        print(cut_message(result))
    if source:
        print(f"size buckets {buckets.describe()}: {source}")
        result["fit_source"] = source
    if args.json:
        write_json_atomic(result, args.json)
        print(f"wrote {args.json}")
    return 0
