"""``smallbox ensemble PRED [PRED ...] --out OUT.json``: fuse prediction files (WBF, NMS,
soft-NMS, NMW) with ensemble_boxes' results, optionally gated by box size per member."""

from __future__ import annotations

import sys

import time
from pathlib import Path

from ..datasets import SizeBuckets, load_coco
from ..datasets.manifest import size_buckets
from ..errors import SmallboxError
from ..evaluate import evaluate
from ..fusion.ensemble import CONF_TYPES, DEFAULT_IOU, METHODS, SOFT_METHODS, ensemble_predictions
from ..fusion.members import check_categories, check_members, describe_gate, parse_gate, specialist_gates
from ..predictions.files import prediction_notes
from ..predictions import (index_folder, index_from_coco, read_prediction_file, write_competition_csv,
                           write_predictions)
from .options import add_size_options, refuse_output_onto_inputs, max_dets_for, number, output_file


def add_arguments(p):
    p.add_argument("pred", nargs="+", help="prediction files: COCO results .json/.json.gz (original ids) or competition .csv")
    p.add_argument("--out", required=True, type=output_file, help="fused COCO results json")
    p.add_argument("--csv", type=output_file, help="also write the fused boxes as a competition CSV (PredictionString,image_id)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gt", help="COCO json of the predicted images: ids, sizes, file names, categories")
    src.add_argument("--images", help="folder of the predicted images, when there is no ground truth: image ids as every "
                                      "smallbox command gives them to a folder (a converted split folder: its manifest's; "
                                      "else 1..N by file name)")
    p.add_argument("--method", choices=METHODS, default="wbf", help="how overlapping boxes of the files are fused")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per file (default: none, i.e. equal)")
    p.add_argument("--iou", type=number(float, 0, 1),
                   help="match / suppression IoU (default: " + ", ".join(f"{m} {v}" for m, v in DEFAULT_IOU.items()) + ")")
    p.add_argument("--skip-score", type=float, default=0.0, help="drop boxes scoring below this first")
    p.add_argument("--conf-type", choices=CONF_TYPES, default="avg", help="WBF: how a fused box is scored")
    p.add_argument("--allows-overflow", action="store_true", help="WBF: let fused scores exceed 1")
    p.add_argument("--sigma", type=number(float, 0, low_open=True), default=0.5, help="soft-NMS: gaussian sigma")
    p.add_argument("--soft-thresh", type=number(float, 0, 1), default=0.001,
                   help="soft-NMS: keep boxes whose decayed score is above")
    p.add_argument("--soft-method", choices=tuple(SOFT_METHODS), default="gaussian", help="soft-NMS: score decay")
    gating = p.add_mutually_exclusive_group()
    gating.add_argument("--gate", nargs="+", metavar="SPEC",
                        help="per file, the box sizes it contributes: all, small, medium, large, medium+large, "
                             "or NAME:MIN:MAX in px² (as convert --split; MAX may be inf)")
    gating.add_argument("--specialist-range", metavar="SPEC",
                        help="the FIRST file is a specialist: it keeps boxes in SPEC (e.g. small), the others the rest")
    add_size_options(p)  # --areas names the gates' ranges and the --eval table's; --max-dets its limit
    p.add_argument("--names", nargs="+", metavar="NAME",
                   help="one name per file for the summary and the --eval table (default: the file names, with as "
                        "many parent folders as it takes to tell them apart, e.g. full-val/predictions.json)")
    p.add_argument("--eval", action="store_true", help="with --gt: print AP by size of each file and of the fusion")
    p.add_argument("--eval-with", nargs="+", metavar="PRED",
                   help="with --eval: also score these prediction files in the same table (e.g. other fusions of the "
                        "same files), one row each, named by file")


def run(args) -> int:
    _check_options(args)
    refuse_output_onto_inputs([args.out, args.csv], [*args.pred, *(args.eval_with or ()), args.gt], "ensemble")
    names = args.names or row_names(args.pred)
    gt = load_coco(args.gt, check_files=False) if args.gt else None
    image_set = index_from_coco(gt) if gt else index_folder(args.images)
    members = [read_prediction_file(path, image_set) for path in args.pred]
    others = [read_prediction_file(path, image_set) for path in args.eval_with or ()]
    for path, preds in zip(args.pred, members):
        outside = [p for p in preds if not 0 <= p["score"] <= 1]
        if outside:  # fusion averages scores as probabilities: 4.21 and -0.60 would come out
            raise SmallboxError(f"{path}: {len(outside):,} score(s) outside [0, 1] (e.g. {outside[0]['score']:g} on image "
                                f"{outside[0]['image_id']}): fusion needs probabilities; rescale them first")
        for note in prediction_notes(preds, path):
            print(f"note: {note}", file=sys.stderr)
    check_members(members, args.pred)
    if gt is None:
        check_categories(members, args.pred)
    buckets, source = size_buckets(args.areas, args.gt, gt.areas() if gt else None)
    if source:
        print(f"size buckets {buckets.describe()}: {source}")
    gates = _gates(args, buckets)
    start = time.perf_counter()
    fused = ensemble_predictions(
        members, image_set.images, args.method, gates=gates, weights=args.weights, iou_thr=args.iou,
        skip_box_thr=args.skip_score, conf_type=args.conf_type, allows_overflow=args.allows_overflow,
        sigma=args.sigma, thresh=args.soft_thresh, soft_method=args.soft_method)
    elapsed = time.perf_counter() - start
    write_predictions(fused, args.out)
    if args.csv:
        category_ids = image_set.category_ids or sorted({p["category_id"] for m in members for p in m})
        write_competition_csv(fused, args.csv, image_set.file_names(), category_ids)
    print(_summary(args, names, members, gates, fused, elapsed))
    if args.eval:
        other_names = row_names(args.eval_with or [])
        print(format_eval_rows([*zip(names, members), *zip(other_names, others), (_fused_name(args, other_names), fused)],
                               gt, buckets, max_dets_for(args)))
    return 0


def row_names(paths) -> list[str]:
    """The file names of ``paths``, with as many parent folders as it takes to tell them apart
    (``specialist-val/predictions.json``, ``full-val/predictions.json``)."""
    parts = [Path(p).parts for p in paths]
    for depth in range(1, max(map(len, parts), default=0) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _fused_name(args, taken) -> str:
    """The fusion's row: its output file's name when the table has other fusions, else the method."""
    return row_names([args.out])[0] if taken else f"{args.method} fusion"


def _check_options(args):
    if args.eval and not args.gt:
        raise SmallboxError("--eval needs --gt (the ground truth to score against)")
    if args.eval_with and not args.eval:
        raise SmallboxError("--eval-with scores files in the --eval table: give --eval too")
    for option in ("weights", "names"):
        given = getattr(args, option)
        if given is not None and len(given) != len(args.pred):
            raise SmallboxError(f"--{option}: got {len(given)} for {len(args.pred)} prediction files")
    if args.weights is not None and not all(w > 0 for w in args.weights):
        raise SmallboxError("--weights must be positive")


def _gates(args, buckets):
    if args.specialist_range:
        return specialist_gates(args.specialist_range, len(args.pred), buckets)
    if args.gate:
        if len(args.gate) != len(args.pred):
            raise SmallboxError(f"--gate: got {len(args.gate)} specs for {len(args.pred)} prediction files")
        return [parse_gate(s, buckets) for s in args.gate]
    return None


def _summary(args, names, members, gates, fused, elapsed) -> str:
    lines = []
    for i, (path, name, preds) in enumerate(zip(args.pred, names, members)):
        gate = f", gated to {describe_gate(gates[i])}" if gates else ""
        lines.append(f"  {path}{f' ({name})' if args.names else ''}: {len(preds)} boxes{gate}")
    lines.append(f"{args.method}: {len(fused)} boxes in {elapsed:.3f} s -> {args.out}"
                 + (f" and {args.csv}" if args.csv else ""))
    return "\n".join(lines)


def format_eval_rows(rows, gt, buckets: SizeBuckets, max_dets: int = 100) -> str:
    """One line per predictions list: AP, AP50 and AP by size (COCO's ranges, and ``buckets``'),
    at ``max_dets`` detections per image and class."""
    sets = [SizeBuckets.coco()] + ([] if buckets.is_coco and buckets.name == "coco" else [buckets])

    def short(b, n):
        return f"{b.name}/AP_{n[0] if b.names == ('small', 'medium', 'large') else n}"

    head = f"{'predictions':<44}{'AP':>7}{'AP50':>7}" + "".join(f"{short(b, n):>10}" for b in sets for n in b.names)
    lines = [head]
    for name, preds in rows:
        r = evaluate(gt, preds, buckets, max_dets=max_dets)
        cells = "".join(f"{_fmt(r['buckets'][b.name]['AP_' + n]):>10}" for b in sets for n in b.names)
        lines.append(f"{str(name)[-43:]:<44}{_fmt(r['AP']):>7}{_fmt(r['AP50']):>7}{cells}")
    if max_dets != 100:
        lines.append(f"(up to {max_dets} detections per image and class)")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None or v < 0 else f"{v:.3f}"
