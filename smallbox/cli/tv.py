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
from .options import (AREAS_HELP, DefaultsHelpFormatter, check_device, check_output, checkpoint_kind, max_dets_for, number,
                      output_file)

USAGE = __doc__.split("\n\n", 1)[1]
TRAIN_HELP = """usage: smallbox tv train RECIPE.yaml|last.pt [section.key=value ...]

Trains the recipe (a YAML of the settings below; `base: other.yaml` starts from another recipe,
recipes/tv/ holds the report's) with section.key=value changes on the command line, values read as
YAML (train.lr=0.02 model.anchor_sizes=[16,32,64,128,256]). A run's last.pt in place of the recipe
continues that run (train.epochs=24 to train it longer). The run folder is
train.project/train.name: results.csv (COCO AP by size every eval.interval epochs), results.png,
best.pt, last.pt, predictions.json, recipe.yaml, smallbox.json.
Multi-GPU: torchrun --nproc_per_node N -m smallbox tv train RECIPE.yaml ...

settings and their defaults:
"""
# Settings that count something: at least this much.
MINIMUMS = {"train.epochs": 1, "train.batch": 1, "train.workers": 0, "eval.batch": 1, "eval.interval": 1}


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
    from ..adapters.tv.recipe import settings_help

    if not argv or argv[0] in ("-h", "--help"):
        print(TRAIN_HELP + settings_help())
        return 0
    _check_train(argv[0], argv[1:])
    from ..adapters.tv.trainer import train

    train(argv[0], argv[1:])
    return 0


def _check_train(recipe: str, overrides) -> None:
    """The recipe's settings, checked before any data is read: types, counts, device, run folder."""
    from ..adapters.tv.recipe import DEFAULTS, apply_overrides, load_recipe

    path = Path(recipe)
    if path.is_dir():
        raise SmallboxError(f"{recipe}: is a folder; give a recipe YAML (recipes/tv/) or a run's last.pt")
    if path.suffix == ".pt":
        _check_checkpoint(recipe)
        cfg = apply_overrides(copy.deepcopy(DEFAULTS), overrides, recipe)
    else:
        cfg = load_recipe(recipe, overrides)
    check_settings(cfg)
    if cfg["train"]["resume"] and path.suffix != ".pt":
        _check_checkpoint(cfg["train"]["resume"])
    check_device(cfg["train"]["device"], "train.device")
    check_output(cfg["train"]["project"], "train.project", folder=True)


def check_settings(cfg: dict) -> None:
    """Every setting whose default is a number, a switch, a text or a list must still be one
    (``train.lr=abc`` would fail deep inside the optimizer); counts must be at least their minimum."""
    from ..adapters.tv.recipe import DEFAULTS, FREE_FORM

    for section, settings in DEFAULTS.items():
        for key, default in settings.items():
            dotted, value = f"{section}.{key}", cfg[section][key]
            if dotted in FREE_FORM or default is None:
                continue
            if not _same_kind(value, default):
                raise SmallboxError(f"{dotted}={value!r}: expected {_kind_name(default)} like the default {default!r}")
            if dotted in MINIMUMS and value < MINIMUMS[dotted]:
                raise SmallboxError(f"{dotted}={value}: must be at least {MINIMUMS[dotted]}")


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(value, int) or isinstance(default, float))
    return isinstance(value, type(default))


def _kind_name(default) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text", list: "a list",
            dict: "a mapping"}[type(default)]


def _check_checkpoint(path: str) -> None:
    kind = checkpoint_kind(path)
    if kind == "ultralytics":
        raise SmallboxError(f"{path}: a YOLO checkpoint; use it with `smallbox yolo val/predict` or `smallbox slice`")
    if kind != "tv":
        raise SmallboxError(f"{path}: not a smallbox tv checkpoint (no recipe/model inside)")


def _split_overrides(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, list[str]]:
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if "=" not in a or a.startswith("-")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    return args, rest


def _common(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"smallbox tv {prog}", formatter_class=DefaultsHelpFormatter,
                                epilog="key.sub=value arguments change the checkpoint's settings, e.g. "
                                       "model.nms_thresh=0.7 model.score_thresh=0.001")
    p.add_argument("checkpoint", help="best.pt / last.pt of a smallbox tv run")
    p.add_argument("--batch", type=number(int, 1), default=4, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, cuda:1")
    return p


def _load(args, overrides):
    """(checkpoint, settings with overrides, model on its device, process context)."""
    from ..adapters.tv import dist
    from ..adapters.tv.recipe import apply_overrides
    from ..adapters.tv.trainer import load_checkpoint, model_from_checkpoint

    _check_checkpoint(args.checkpoint)
    check_device(args.device, "--device")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = apply_overrides(copy.deepcopy(ckpt["recipe"]), overrides, args.checkpoint)
    check_settings(cfg)
    ctx = dist.setup(args.device)
    model = model_from_checkpoint(ckpt, cfg["model"]).to(ctx.device)
    return ckpt, cfg, model, ctx


def _eval(argv) -> int:
    p = _common("eval")
    p.add_argument("--data", help="COCO json to evaluate on (default: the run's data.val)")
    p.add_argument("--images", help="its image folder (default: the run's)")
    p.add_argument("--areas", help="size ranges besides COCO's (default: the run's): " + AREAS_HELP)
    p.add_argument("--max-dets", type=number(int, 1), default=None, metavar="N",
                   help="detections per image and class that count (default COCO's 100; aitod 1500)")
    p.add_argument("--out", type=output_file, help="write the predictions (COCO results, original ids) here")
    p.add_argument("--json", type=output_file, help="write the metrics here")
    p.add_argument("--per-class", action="store_true", help="also AP, AP50 and AP by size per class")
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
    if args.areas:
        from ..datasets.manifest import size_buckets

        bucket_set, source = size_buckets(args.areas, gt.path, gt.areas())
        buckets = [bucket_set]
        if source:
            print(f"size buckets {bucket_set.describe()}: {source}")
    else:
        buckets = [SizeBuckets.from_dict(b) for b in ckpt["buckets"] if b["name"] != "coco"]
    category_ids = [c["category_id"] for c in ckpt["classes"]]
    preds = predict(model, CocoDetection(gt, category_ids), ctx, category_ids, args.batch)
    result = evaluate(gt, preds, buckets, per_class=args.per_class, max_dets=max_dets_for(args))
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
                                  "else ids 1..N by file name (OUT.images.json is written beside --out)")
    p.add_argument("--out", required=True, type=output_file, help="COCO results json")
    p.add_argument("--csv", type=output_file, help="also write the competition CSV (PredictionString,image_id)")
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
        write_images_json(Path(args.out).parent, index, [{"id": c["category_id"], "name": c["name"]} for c in ckpt["classes"]],
                          args.out)
    print(f"wrote {args.out}: {len(preds)} boxes on {len(index.images)} images ({index.note()})")
    if args.csv:
        write_competition_csv(preds, args.csv, index.file_names(), category_ids)
        print(f"wrote {args.csv}")
    return 0
