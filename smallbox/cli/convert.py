"""``smallbox convert ANN.json --images DIR --out DIR``: COCO json -> Ultralytics YOLO dataset.
A json with problems is refused whole, with the ``smallbox fix`` command for those it repairs."""

from __future__ import annotations

import argparse
import sys

from ..datasets import load_coco
from ..datasets.coco import duplicate_file_names
from ..datasets.convert import convert_to_yolo
from ..datasets.split import parse_area_range
from ..datasets.tiles import TileSpec
from ..errors import SmallboxError
from .options import number

DEFAULT_VAL_FRACTION = 0.2


def add_arguments(p):
    p.add_argument("annotations", metavar="ANN.json", help="COCO detection json of the training images (or of all, split with --val-fraction)")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="folder the json's file_name entries are relative to; every image's width/height as Ultralytics loads it "
                        "(EXIF orientation applied) must be the json's")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write (an earlier conversion there is replaced after success)")
    p.add_argument("--val", metavar="ANN.json", help="COCO json of the validation images (else a seeded split of ANN.json)")
    p.add_argument("--val-images", metavar="DIR", help="image folder of --val (default: --images)")
    p.add_argument("--val-fraction", type=float, metavar="F", help=f"share of images for val without --val (default {DEFAULT_VAL_FRACTION})")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    p.add_argument("--split", action="append", default=[], metavar="NAME:MIN_AREA:MAX_AREA",
                   help="per-area splits train-NAME/val-NAME + data-NAME.yaml holding only boxes with MIN <= w*h < MAX "
                        "(px² of the original image; 32^2 and inf allowed), e.g. small:0:1024; repeatable")
    p.add_argument("--drop-empty", action="store_true", help="leave images without an in-range box out of the per-area splits (default: kept as negatives)")
    p.add_argument("--tiles", metavar="SIZE[,OVERLAP]",
                   help="also write the train images cut into tiles at their native resolution (train-tiles, "
                        "data-tiles.yaml; overlap default 0.2), as SAHI's slice_coco cuts them; val stays whole and is "
                        "scored through sliced inference with these tiles")
    p.add_argument("--min-visibility", type=float, default=0.1, metavar="F",
                   help="with --tiles: keep a clipped box when at least this share of its area is in the tile (SAHI's "
                        "min_area_ratio)")
    p.add_argument("--empty-tiles", type=float, default=1.0, metavar="F",
                   help="with --tiles: share of the tiles without a box that are kept (seeded by --seed; 1: all)")
    p.add_argument("--areas", action="append", default=None, metavar="SPEC",
                   help="size ranges recorded besides COCO's (repeatable; default fit: tertiles of the train boxes): "
                        "aitod, fit:K, A,B,... in px², NAME=LO:HI,...; every command that reads the dataset (training's "
                        "results.csv columns, the size-weighted loss, eval, report) uses them")
    p.add_argument("--buckets", dest="areas", action="append", help=argparse.SUPPRESS)  # the older name
    p.add_argument("--max-dets", type=number(int, 1), default=None, metavar="N",
                   help="detections per image and class the dataset's evaluations count (default: the --areas preset's, "
                        "aitod 1500, else COCO's 100)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset at --out converted from other inputs or with other options (a rerun of the same "
                        "conversion replaces it anyway)")
    p.add_argument("--clip", action="store_true",
                   help="clip boxes reaching outside their image, however far (default: an error; "
                        "`smallbox fix` clips those within 1 px and logs each)")
    how = p.add_mutually_exclusive_group()
    # Hard links by default: on ext4/overlayfs they cost a fraction of a symlink to create (0.25 s
    # against ~4 s per 14k images here), and they keep working if the source folder moves.
    how.add_argument("--hardlink", action="store_const", dest="placement", const="hardlink", default="hardlink",
                     help="hard-link the images (default; where the filesystem refuses, symlinks, then copies)")
    how.add_argument("--symlink", action="store_const", dest="placement", const="symlink",
                     help="absolute symlinks to the resolved sources instead (a replaced source image shows up in the dataset)")
    how.add_argument("--copy", action="store_const", dest="placement", const="copy",
                     help="copy the images")


def run(args) -> int:
    if args.val and args.val_fraction is not None:
        raise SmallboxError("give either --val or --val-fraction, not both")
    area_ranges = tuple(parse_area_range(s) for s in args.split)
    tiles = TileSpec.parse(args.tiles, args.min_visibility, args.empty_tiles, args.seed) if args.tiles else None
    out_of_bounds = "clip" if args.clip else "error"
    train = load_coco(args.annotations, args.images, out_of_bounds)
    val = load_coco(args.val, args.val_images or args.images, out_of_bounds) if args.val else None
    for dataset in (train, val):
        twice = duplicate_file_names(dataset.data) if dataset else {}
        if twice:
            name, ids = next(iter(twice.items()))
            raise SmallboxError(f"{dataset.path}: {len(twice)} file_name(s) named by two or more image ids (e.g. {name!r}: "
                                f"ids {', '.join(map(str, ids))}): converting would label one file twice, each copy with "
                                "part of its boxes. Merge the entries (one id per file) first")
        for w in dataset.warnings if dataset else ():
            print(f"warning: {dataset.path}: {w}", file=sys.stderr)
    result = convert_to_yolo(
        train, args.out, val,
        val_fraction=DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction,
        seed=args.seed, area_ranges=area_ranges, drop_empty=args.drop_empty,
        buckets=args.areas or ["fit"], placement=args.placement, tiles=tiles, max_dets=_max_dets(args), overwrite=args.overwrite,
    )
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(_summary(result, train.clipped + (val.clipped if val else 0)))
    return 0


def _max_dets(args) -> int | None:
    from ..datasets.buckets import PRESET_MAX_DETS

    if args.max_dets:
        return args.max_dets
    found = [PRESET_MAX_DETS[a.strip()] for a in args.areas or [] if a.strip() in PRESET_MAX_DETS]
    return max(found) if found else None


def _summary(result, clipped: int) -> str:
    lines = [f"{'split':<20} {'images':>8} {'boxes':>8} {'negatives':>10}"]
    lines += [f"{name:<20} {c['images']:>8} {c['boxes']:>8} {c['negatives']:>10}" for name, c in result.counts.items()]
    how = ", ".join(f"{n} {verb}" for verb, n in zip(("hard-linked", "symlinked", "copied"), result.placed.values()) if n)
    placed = sum(result.placed.values())
    if placed != result.sources:  # the size splits' folders hold the same files again
        how = f"{result.sources} files, placed {placed} times in the split folders ({how})"
    lines.append(f"images: {how}; size buckets: {', '.join(b.describe() for b in result.buckets)}")
    if clipped:
        lines.append(f"clipped {clipped} box(es) to their image")
    data_yamls = ["data.yaml"] + sorted(p.name for p in result.out.glob("data-*.yaml"))
    lines.append(f"wrote {result.out} ({', '.join(data_yamls)})")
    return "\n".join(lines)
