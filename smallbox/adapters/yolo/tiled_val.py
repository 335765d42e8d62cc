"""Validation of a model trained on tiles (``data-tiles.yaml`` from ``smallbox convert --tiles``):
each WHOLE val image is predicted through sliced inference, exactly as ``smallbox slice`` with its
defaults predicts it (:func:`smallbox.fusion.sliced.slice_images`, the tile size the model was
trained on, the model loaded from a checkpoint as ``slice`` loads it), and scored against the
original json. So every results.csv row, the choice of best.pt and ``slice`` + ``eval`` on the
saved weights are one number per model, measured the way the model will be used.

Ultralytics' own box metrics (precision, recall, its mAP) and the val losses are computed on
letterboxed whole images, which a tiled model is not used on: their columns hold NaN."""

from __future__ import annotations

import math
import tempfile
from copy import deepcopy
from pathlib import Path

import torch
from ultralytics.utils import LOGGER, RANK

from ...callbacks.coco_metrics import flatten_metrics, format_columns
from ...datasets.manifest import dataset_section
from ...evaluate.table import format_metrics
from ...fusion.sliced import SliceOptions, slice_images
from ...predictions.speed import speed_line


def tiles_of(data: dict | None) -> dict | None:
    """The tiling of a converted dataset's data.yaml (None: not a tiled dataset)."""
    if not data:
        return None
    section = dataset_section(data, data.get("yaml_file", "data.yaml"))
    return section.tiles if section else None


def sliced_validation(validator, trainer=None, weights=None) -> dict:
    """The metrics dict ``BaseValidator.__call__`` returns, from sliced inference of the val split."""
    from ..predict_fn import load_predict_fn

    training = trainer is not None
    validator.training = training
    data = trainer.data if training else validator.data
    split = validator.args.split or "val"
    evaluator = validator.coco_evaluator(data, split, bool(validator.args.single_cls))
    validator.coco_eval = evaluator
    root = Path(str(data["path"]))
    folder = Path(str(data[split])) if Path(str(data[split])).is_absolute() else root / str(data[split])
    names = {image_id: name for name, image_id in evaluator.ids_by_name.items()}
    images = [(im["id"], folder / names[im["id"]]) for im in evaluator.gt.images if im["id"] in names]
    conf = validator.args.conf if validator.args.conf is not None else 0.001
    device = str(trainer.device) if training else validator.args.device
    with tempfile.TemporaryDirectory() as tmp:
        if training:  # the EMA as save_model writes it, loaded as `smallbox slice` loads a checkpoint
            weights = Path(tmp) / "epoch.pt"
            torch.save({"model": _saved_ema(trainer), "train_args": vars(trainer.args)}, weights)
        predict_fn = load_predict_fn(weights, conf, validator.args.imgsz, device, validator.args.iou)
        options = SliceOptions()
        preds, _, seconds = slice_images(images, predict_fn, options, evaluator.category_ids, progress=RANK in {-1, 0})
    validator.coco_preds, validator.coco_image_ids = preds, [i for i, _ in images]
    validator.coco_result = evaluator.evaluate(preds, validator.coco_image_ids)
    columns = flatten_metrics(validator.coco_result, evaluator.buckets)
    stats = {k: math.nan for k in validator.metrics.keys}
    stats.update(columns)
    if validator.fitness_key:
        stats["fitness"] = columns[validator.fitness_key]
    validator.sliced = {"tile": options.tile_for(predict_fn), "overlap": options.overlap, "merge": options.merge,
                        "match_metric": options.match_metric, "match_thr": options.match_thr, "upscale": options.upscale,
                        "full": options.full}
    if training:
        LOGGER.info(f"smallbox: tiled model, scored on the whole val images through sliced inference "
                    f"(tile {validator.sliced['tile']}; {seconds:.1f} s)\n" + format_columns(columns))
        return {**stats, **trainer.label_loss_items(dict.fromkeys(trainer.loss_names, math.nan), prefix="val")}
    LOGGER.info(format_metrics(validator.coco_result, f"\nsmallbox: COCO metrics vs {evaluator.gt.path} "
                                                      f"(sliced inference, tile {validator.sliced['tile']})"))
    LOGGER.info(speed_line(len(images), seconds))
    validator._export()
    return stats


def _saved_ema(trainer):
    """The EMA as ``BaseTrainer.save_model`` serialises it (fp16, NaNs zeroed), back in fp32."""
    ema = deepcopy(trainer.ema.ema)
    if hasattr(ema, "criterion"):
        ema.criterion = None
    ema = ema.half()
    for v in ema.state_dict().values():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            torch.nan_to_num_(v)
    return ema.float()
