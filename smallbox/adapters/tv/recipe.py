"""Recipes of the torchvision path: one YAML per experiment, every setting with a default below,
dotted ``key.sub=value`` overrides on the command line (values parsed as YAML).

A recipe may start from another one with ``base: other.yaml`` (relative to the recipe); its
own keys win. A key that is not a setting is an error naming the key and the recipe file.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from ...errors import SmallboxError
from ...fileio import read_yaml

DEFAULTS: dict = {
    "model": {
        "arch": "faster_rcnn",          # faster_rcnn | retinanet
        "backbone": "resnet50",         # torchvision resnet name, or timm:<any features_only model>
        "backbone_kwargs": {},          # extra timm.create_model arguments (e.g. a tiny test model)
        "out_indices": None,            # timm stages fed to the FPN; default last 4 (Faster R-CNN) / last 3 (RetinaNet)
        "fpn_channels": 256,
        "weights": None,                # local file: a detector state dict (e.g. torchvision's COCO weights)
        "backbone_weights": None,       # local file: backbone state dict (ImageNet); freezes BN as torchvision does
        "trainable_layers": 3,          # resnet stages trained when backbone_weights are given (0-5)
        "init_from": None,              # a smallbox tv checkpoint to start from (fine-tune at another size)
        "min_size": 1024,               # shorter side after the model's resize
        "max_size": 1024,               # longer side bound
        "anchor_sizes": None,           # base anchor size per FPN level; unset: [16, 32, 64, 128, 256] as the
                                        # recipes (torchvision's [32, ..., 512] with model.weights); recorded
        "aspect_ratios": [0.5, 1.0, 2.0],
        "rpn_fg_iou_thresh": 0.7,       # Faster R-CNN train assigners
        "rpn_bg_iou_thresh": 0.3,
        "box_fg_iou_thresh": 0.5,
        "box_bg_iou_thresh": 0.5,
        "rpn_pre_nms_top_n_train": 2000,  # proposals kept (torchvision's defaults); lower = faster
        "rpn_post_nms_top_n_train": 2000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_test": 1000,
        "rpn_batch_size_per_image": 256,
        "box_batch_size_per_image": 512,  # ROIs sampled per image for the ROI head loss
        "fg_iou_thresh": 0.5,           # RetinaNet train assigner
        "bg_iou_thresh": 0.4,
        "nms_thresh": 0.5,              # test NMS IoU
        "score_thresh": 0.001,          # as the YOLO path evaluates (conf=0.001): the two paths compare
        "detections_per_img": 300,      # YOLO's max_det default; COCO AP counts each image's best 100
        "topk_candidates": 1000,        # RetinaNet: boxes per level before NMS
    },
    "loss": {
        # size-weighted box regression (ROI head / RetinaNet regression head); null = torchvision's loss
        "size_weights": None,           # {thresholds: coco | fit | [A, B] (px² of the original image), weights: [small, medium, large]}
    },
    "data": {
        "train": None,                  # COCO json
        "val": None,                    # COCO json
        "images": None,                 # image folder of both (file_name is relative to it)
        "train_images": None,           # per-split folders, when they differ
        "val_images": None,
        "area_range": None,             # [min, max] px²: keep only boxes of that area (specialist training)
        "keep_empty": False,            # keep training images left without boxes (as negatives)
        "out_of_bounds": "error",       # error | clip (clipped however far out); `smallbox fix` repairs small overhangs
    },
    "aug": {
        "hflip": 0.5,
        "vflip": 0.0,
        "letterbox": None,              # int: resize the longer side to it and pad to a square
        "min_visibility": 0.0,          # albumentations: drop boxes less visible than this after the transform
        "min_area": 0.0,                # albumentations: drop boxes smaller than this (px², after the transform)
    },
    "train": {
        "epochs": 12,
        "batch": 4,
        "workers": 2,
        "optimizer": "sgd",             # sgd | adamw
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "cosine",           # cosine | step
        "steps": [8, 11],               # epochs at which a step schedule multiplies the lr by gamma
        "gamma": 0.1,
        "final_lr_factor": 0.01,        # cosine ends at lr * this
        "warmup_iters": 500,
        "warmup_factor": 0.001,
        "amp": True,                    # mixed precision (CUDA only)
        "clip_grad": 0.0,               # max gradient norm; 0 = no clipping
        "device": "auto",
        "seed": 0,
        "limit_batches": None,          # train on at most this many batches per epoch (smoke runs)
        "project": "runs/tv",
        "name": None,                   # run folder name; default: the recipe's file stem
        "exist_ok": False,
        "resume": None,                 # last.pt of an interrupted run: continue it
    },
    "eval": {
        "interval": 1,                  # evaluate every N epochs (and always after the last)
        "buckets": ["fit"],             # size bucket sets besides COCO's: fit | coco | "A,B"
        "best_metric": "coco/AP",       # results.csv column that picks best.pt
        "batch": 4,
    },
}
# Settings whose value is a free-form mapping: their sub-keys are not checked.
FREE_FORM = {"model.backbone_kwargs", "loss.size_weights"}


def load_recipe(path, overrides=()) -> dict:
    """The full settings of a recipe file with ``overrides`` (``["train.lr=0.02", ...]``) applied.

    Raises:
        SmallboxError: unknown key (naming it and the file), unreadable file, bad override.
    """
    path = Path(path)
    cfg = copy.deepcopy(DEFAULTS)
    for layer_path, layer in _recipe_layers(path):
        merge(cfg, layer, layer_path)
    apply_overrides(cfg, overrides, path)
    return cfg


def apply_overrides(cfg: dict, overrides, source) -> dict:
    """Apply ``key.sub=value`` strings to ``cfg`` in place (values parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SmallboxError(f"{item!r}: settings are given as key.sub=value")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            value = text
        merge(cfg, _nest(key.strip(), value), f"{source} (command line {key.strip()!r})")
    return cfg


def merge(cfg: dict, layer: dict, source, prefix: str = "") -> None:
    """Merge ``layer`` into ``cfg``; every key of ``layer`` must exist in :data:`DEFAULTS`."""
    if not isinstance(layer, dict):
        raise SmallboxError(f"{source}: expected a mapping of settings at {prefix or 'top level'}, got {layer!r}")
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in cfg:
            known = ", ".join(sorted(cfg)) if cfg else "none"
            raise SmallboxError(f"{source}: unknown setting {dotted!r} (known here: {known})")
        if dotted in FREE_FORM and isinstance(cfg[key], dict) and isinstance(value, dict):
            cfg[key] = {**cfg[key], **copy.deepcopy(value)}  # loss.size_weights.weights=... keeps the thresholds
        elif dotted in FREE_FORM or not isinstance(cfg[key], dict):
            cfg[key] = copy.deepcopy(value)
        else:
            merge(cfg[key], value, source, f"{dotted}.")


def _nest(dotted: str, value) -> dict:
    out = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _recipe_layers(path: Path, seen=()) -> list[tuple[Path, dict]]:
    """``[(file, settings)]`` from the deepest ``base`` to ``path`` itself."""
    if path in seen:
        raise SmallboxError(f"{path}: recipe bases form a loop")
    layer = read_yaml(path, "recipe", empty={})
    base = layer.pop("base", None)
    if base is None:
        return [(path, layer)]
    return _recipe_layers((path.parent / base).resolve(), (*seen, path)) + [(path, layer)]


def dump_recipe(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def settings_help() -> str:
    """Every setting as ``section.key=default`` with the comment :data:`DEFAULTS` has beside it,
    one a line (``smallbox tv train --help``)."""
    notes = _default_comments()
    lines = []
    for section, settings in DEFAULTS.items():
        for key, value in settings.items():
            setting = f"  {section}.{key}={_inline_yaml(value)}"
            note = notes.get(f"{section}.{key}", "")
            lines.append(f"{setting:<38} {note}".rstrip() if note else setting)
    return "\n".join(lines)


def _inline_yaml(value) -> str:
    # a scalar's one-line dump ends with YAML's document end mark "..."
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def _default_comments() -> dict[str, str]:
    """``{"model.arch": "faster_rcnn | retinanet", ...}`` from the source of :data:`DEFAULTS`: a
    setting's own comment, after any comment lines just above it."""
    source = Path(__file__).read_text(encoding="utf-8")
    body = source[source.index("DEFAULTS: dict = {"):].splitlines()[1:]
    notes, section, above = {}, None, []
    for line in body:
        if line.startswith("}"):
            break
        comment = re.fullmatch(r"\s*#\s*(.*)", line)
        setting = re.fullmatch(r'( +)"(\w+)":\s*(.*?)(?:\s*#\s*(.*))?', line)
        if comment:
            above.append(comment.group(1))
        elif setting and len(setting.group(1)) == 4:
            section, above = setting.group(2), []
        elif setting:
            notes[f"{section}.{setting.group(2)}"] = "; ".join([*above, *filter(None, [setting.group(4)])])
            above = []
    return notes
