"""``smallbox tv train|eval|predict``: the torchvision Faster R-CNN / RetinaNet path.

    smallbox tv train RECIPE.yaml [key.sub=value ...]     # or a last.pt in place of the recipe: resume
    smallbox tv eval CKPT [--data VAL.json --images DIR] [--out preds.json] [model.nms_thresh=0.7 ...]
    smallbox tv predict CKPT --images DIR --out preds.json [--coco ids.json] [--csv submission.csv]
    torchrun --nproc_per_node 4 -m smallbox tv train RECIPE.yaml ...
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from ..datasets import CocoDataset, SizeBuckets, load_coco
from ..errors import SmallboxError

USAGE = __doc__.split("\n\n", 1)[1]


def run_argv(argv) -> int:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage:\n" + USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        return _train(rest)
    if command in ("eval", "predict"):
        return _eval(rest) if command == "eval" else _predict(rest)
    raise SmallboxError(f"unknown tv command {command!r}: use train, eval or predict")


def _train(argv) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: smallbox tv train RECIPE.yaml|last.pt [key.sub=value ...]\n"
              "settings and defaults: smallbox/adapters/tv/recipe.py; recipes: recipes/tv/")
        return 0
    from ..adapters.tv.trainer import train

    train(argv[0], argv[1:])
    return 0


def _split_overrides(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, list[str]]:
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if "=" not in a or a.startswith("-")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    return args, rest


def _common(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"smallbox tv {prog}", epilog="key.sub=value arguments change the checkpoint's "
                                "settings, e.g. model.nms_thresh=0.7 model.score_thresh=0.001")
    p.add_argument("checkpoint", help="best.pt / last.pt of a smallbox tv run")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--device", default="auto")
    return p


def _load(args, overrides):
    """(checkpoint, settings with overrides, model on its device, process context)."""
    from ..adapters.tv import dist
    from ..adapters.tv.recipe import apply_overrides
    from ..adapters.tv.trainer import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    cfg = apply_overrides(copy.deepcopy(ckpt["recipe"]), overrides, args.checkpoint)
    ctx = dist.setup(args.device)
    model = model_from_checkpoint(ckpt, cfg["model"]).to(ctx.device)
    return ckpt, cfg, model, ctx


def _eval(argv) -> int:
    p = _common("eval")
    p.add_argument("--data", help="COCO json to evaluate on (default: the run's data.val)")
    p.add_argument("--images", help="its image folder (default: the run's)")
    p.add_argument("--areas", help="size buckets besides COCO's: fit, A,B (default: the run's)")
    p.add_argument("--out", help="write the predictions (COCO results, original ids) here")
    p.add_argument("--json", help="write the metrics here")
    p.add_argument("--per-class", action="store_true")
    args, overrides = _split_overrides(p, argv)
    from ..adapters.tv.data import CocoDetection, filter_by_area
    from ..adapters.tv.engine import predict
    from ..evaluate import evaluate
    from ..evaluate.table import format_metrics
    from ..fileio import write_json_atomic
    from ..predictions import write_predictions

    ckpt, cfg, model, ctx = _load(args, overrides)
    d = cfg["data"]
    gt = load_coco(args.data or d["val"], args.images or d["val_images"] or d["images"], d["out_of_bounds"])
    gt = filter_by_area(gt, d["area_range"], keep_empty=True)
    category_ids = [c["category_id"] for c in ckpt["classes"]]
    preds = predict(model, CocoDetection(gt, category_ids), ctx, category_ids, args.batch)
    if args.areas:
        buckets = [SizeBuckets.parse(args.areas, gt.areas())]
    else:
        buckets = [SizeBuckets.from_dict(b) for b in ckpt["buckets"] if b["name"] != "coco"]
    result = evaluate(gt, preds, buckets, per_class=args.per_class)
    print(format_metrics(result, f"{args.checkpoint} on {gt.path}"))
    if args.out:
        write_predictions(preds, args.out)
        print(f"wrote {args.out} ({len(preds)} boxes)")
    if args.json:
        write_json_atomic(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _predict(argv) -> int:
    p = _common("predict")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--coco", help="COCO json of these images: its image and category ids; the json's images are predicted "
                                  "(each must be in the folder; other files are left out). Without it: $SMALLBOX_IMAGE_IDS, "
                                  "else ids 1..N by file name (images.json is written beside --out)")
    p.add_argument("--out", required=True, help="COCO results json")
    p.add_argument("--csv", help="also write the competition CSV (PredictionString,image_id)")
    args, overrides = _split_overrides(p, argv)
    from ..adapters.tv.data import CocoDetection
    from ..adapters.tv.engine import predict
    from ..predictions import index_folder, write_competition_csv, write_images_json, write_predictions

    index = index_folder(args.images, ids_json=args.coco)
    ckpt, cfg, model, ctx = _load(args, overrides)
    category_ids = [c["category_id"] for c in ckpt["classes"]]
    images = CocoDataset(Path(args.images), {"images": index.images, "annotations": [], "categories": []}, Path(args.images))
    preds = predict(model, CocoDetection(images, category_ids, image_files=index.files), ctx, category_ids, args.batch)
    write_predictions(preds, args.out)
    if index.source == "folder":
        write_images_json(Path(args.out).parent, index, [{"id": c["category_id"], "name": c["name"]} for c in ckpt["classes"]])
    print(f"wrote {args.out}: {len(preds)} boxes on {len(index.images)} images ({index.note()})")
    if args.csv:
        write_competition_csv(preds, args.csv, index.file_names(), category_ids)
        print(f"wrote {args.csv}")
    return 0
