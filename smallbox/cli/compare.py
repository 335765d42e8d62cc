"""``smallbox compare GT.json A.json B.json --images DIR --out DIR``: the boxes one model finds
and the other misses, per size bucket and class, with crops and an HTML page."""

from __future__ import annotations

from pathlib import Path

from ..datasets import load_coco
from ..datasets.manifest import size_buckets
from ..errors import SmallboxError
from ..analysis.compare import write_comparison
from ..predictions import load_predictions
from .options import add_size_options, refuse_output_onto_inputs, number, output_folder


def add_arguments(p):
    p.add_argument("gt", help="ground-truth COCO json")
    p.add_argument("a", help="model A's COCO results (.json or .json.gz)")
    p.add_argument("b", help="model B's COCO results")
    p.add_argument("--images", required=True, help="folder the ground truth's file_name values are relative to")
    p.add_argument("--out", required=True, type=output_folder,
                   help="output folder: summary.json, contact_sheet.png, index.html, crops/")
    p.add_argument("--score-thr", type=number(float, 0, 1), default=0.3, help="a detection counts from this score on")
    p.add_argument("--iou", type=number(float, 0, 1, low_open=True), default=0.5, help="IoU needed to find a box")
    add_size_options(p, max_dets=False)
    p.add_argument("--max-crops", type=number(int, 0), default=200, help="crops drawn per list (all are counted)")


WRITTEN = ("summary.json", "index.html", "contact_sheet.png", "pr_by_size.png", "errors.png", "errors.json")


def run(args) -> int:
    refuse_output_onto_inputs([Path(args.out) / name for name in WRITTEN], [args.gt, args.a, args.b], "compare")
    if not Path(args.images).is_dir():
        raise SmallboxError(f"{args.images}: image folder does not exist")
    gt = load_coco(args.gt, image_root=args.images, check_files=False)
    buckets, source = size_buckets(args.areas, args.gt, gt.areas())
    if source:
        print(f"size buckets {buckets.describe()}: {source}")
    ids, cats = [im["id"] for im in gt.images], gt.category_ids
    preds_a, preds_b = load_predictions(args.a, ids, cats, gt_images=gt.images), \
        load_predictions(args.b, ids, cats, gt_images=gt.images)
    names = (Path(args.a).name.split(".")[0], Path(args.b).name.split(".")[0])
    summary = write_comparison(gt, preds_a, preds_b, args.out, buckets, args.score_thr, args.iou, args.max_crops, names)
    c = summary["counts"]
    print(f"A = {args.a}\nB = {args.b}\nscore >= {args.score_thr:g}, IoU >= {args.iou:g}, size buckets {buckets.describe()}")
    print(f"{'bucket':<8}{'gt':>6}{'both':>6}{'A only':>8}{'B only':>8}{'neither':>9}{'FP A':>6}{'FP B':>6}")
    for bucket in (*buckets.names, "outside", "all"):
        if bucket in c:
            n = c[bucket]
            print(f"{bucket:<8}{n['gt']:>6}{n['both']:>6}{n['a_only']:>8}{n['b_only']:>8}{n['neither']:>9}{n['fp_a']:>6}{n['fp_b']:>6}")
    print(f"wrote {Path(args.out) / 'index.html'}, contact_sheet.png, summary.json")
    return 0
