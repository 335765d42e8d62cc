"""smallbox's Ultralytics detection trainer, validator and predictor, and the registration that
makes the ``yolo`` machinery (``YOLO.task_map``, hence the CLI) use them.

- :class:`SmallboxTrainer` builds :class:`SmallboxDetectionModel` (whose criterion can weight
  the box loss by size), validates with :class:`SmallboxValidator`, keeps the results.csv
  columns the same every epoch, and writes ``smallbox.json`` beside the weights at the end.
- :class:`SmallboxValidator` evaluates against the ORIGINAL COCO json of the split every epoch
  and in standalone ``val`` (see :mod:`smallbox.callbacks.coco_metrics`); standalone it also
  writes ``predictions.json`` (original ids), ``predictions.csv`` (competition format) and
  ``coco_metrics.json`` into its run folder. On a dataset without a ``smallbox:`` section it is
  Ultralytics' own validator.
- :class:`SmallboxPredictor` exports every ``predict`` run on images the same way (see
  :mod:`smallbox.evaluate.yolo_export` for where the image ids come from).

Multi-GPU (``device=0,1``): Ultralytics cloudpickles the trainer class by reference and re-imports
this module in each worker; importing it registers smallbox's layers, so model YAMLs that name
them parse there too. The workers inherit the environment (offline settings, SMALLBOX_FITNESS).
"""

from __future__ import annotations

import os
from copy import copy
from pathlib import Path

import torch.distributed as dist
from ultralytics.models.yolo.detect import DetectionPredictor, DetectionTrainer, DetectionValidator
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import LOGGER, RANK
from ultralytics.utils.torch_utils import unwrap_model

from ..callbacks.coco_metrics import CocoSplitEvaluator, fitness_column, flatten_metrics, format_columns
from ..datasets.coco import read_json
from ..datasets.errors import SmallboxError
from ..datasets.manifest import load_manifest
from ..evaluate import write_json_atomic
from ..evaluate.table import format_metrics
from ..evaluate.yolo_export import (IMAGE_IDS_ENV, PREDICTIONS_JSON, assign_image_ids, image_ids_from_json,
                                    to_coco_results, write_images_json, write_predictions)
from .register import register_modules
from .size_loss import resolve_named_thresholds
from .yolo_model import SmallboxDetectionModel

RUN_INFO = "smallbox.json"
COCO_METRICS_JSON = "coco_metrics.json"
# Ultralytics adds these (zeros unless its own COCO path ran) under save_json; ours replace them.
STOCK_SIZE_KEYS = tuple(f"metrics/mAP_{b}(B)" for b in ("small", "medium", "large"))

register_modules()  # DDP workers import this module to unpickle the trainer: layers must be known there


class SmallboxValidator(DetectionValidator):
    """``DetectionValidator`` that adds COCO AP by size (original json, original ids)."""

    coco_eval: CocoSplitEvaluator | None = None

    def init_metrics(self, model):
        super().init_metrics(model)
        self.coco_eval = self.coco_evaluator(self.data, self.args.split or "val", self.args.single_cls)
        self.coco_preds, self.coco_image_ids, self.coco_result = [], [], None
        if self.coco_eval is not None:
            # Ultralytics' own json path (ground truth rebuilt from YOLO labels) would evaluate twice.
            self.is_custom_json, self.build_gdict, self.gdict = False, False, None

    def coco_evaluator(self, data: dict, split_key: str, single_cls: bool) -> CocoSplitEvaluator | None:
        """The evaluator of ``data[split_key]`` (None on a plain YOLO dataset); sets
        ``fitness_key``. Cached: the ground truth is read once per run, not once per epoch."""
        key = (str(data.get("yaml_file")), str(data.get(split_key)), single_cls)
        if getattr(self, "_coco_eval_key", None) == key:
            return self._coco_eval_cached
        evaluator = None
        if single_cls:
            LOGGER.warning("smallbox: single_cls=True merges the classes; COCO AP by size is not computed")
        else:
            evaluator = CocoSplitEvaluator.for_data(data, split_key)
            if evaluator is None:
                LOGGER.info("smallbox: no `smallbox:` section for this split in the data YAML (write the dataset "
                            "with `smallbox convert`): Ultralytics' metrics only")
        self.fitness_key = fitness_column(data, evaluator.columns) if evaluator else None
        self._coco_eval_key, self._coco_eval_cached = key, evaluator
        return evaluator

    def update_metrics(self, preds, batch):
        super().update_metrics(preds, batch)
        if self.coco_eval is None:
            return
        for si, pred in enumerate(preds):
            pbatch = self._prepare_batch(si, batch)
            image_id = self.coco_eval.image_id(pbatch["im_file"])
            self.coco_image_ids.append(image_id)
            if len(pred["cls"]):
                predn = self.scale_preds(pred, pbatch)
                self.coco_preds += self.coco_eval.results(
                    predn["bboxes"].cpu().numpy(), predn["conf"].cpu().numpy(), predn["cls"].cpu().numpy(), image_id)

    def pred_to_json(self, predn, pbatch):
        if self.coco_eval is None:  # ours are collected in update_metrics, with the original ids
            super().pred_to_json(predn, pbatch)

    def gather_stats(self):
        super().gather_stats()
        if self.coco_eval is None or RANK == -1:
            return
        gathered = [None] * dist.get_world_size() if RANK == 0 else None
        dist.gather_object((self.coco_preds, self.coco_image_ids), gathered, dst=0)
        if RANK == 0:
            self.coco_preds = [p for preds, _ in gathered for p in preds]
            self.coco_image_ids = [i for _, ids in gathered for i in ids]
        else:
            self.coco_preds, self.coco_image_ids = [], []

    def get_stats(self):
        stats = super().get_stats()
        if self.coco_eval is None:
            return stats
        for k in STOCK_SIZE_KEYS:
            stats.pop(k, None)
        self.coco_result = self.coco_eval.evaluate(self.coco_preds, self.coco_image_ids)
        columns = flatten_metrics(self.coco_result, self.coco_eval.buckets)
        stats.update(columns)
        if self.fitness_key:
            stats["fitness"] = columns[self.fitness_key]
        if not self.training:
            self._export()
        return stats

    def print_results(self):
        super().print_results()
        if self.coco_result is None:
            return
        columns = flatten_metrics(self.coco_result, self.coco_eval.buckets)
        if self.training:
            LOGGER.info(format_columns(columns))
        else:
            LOGGER.info(format_metrics(self.coco_result, f"\nsmallbox: COCO metrics vs {self.coco_eval.gt.path}"))

    def _export(self):
        """predictions.json / .csv and coco_metrics.json of a standalone validation."""
        file_names = self.coco_eval.file_names(self.coco_image_ids)
        json_path, csv_path = write_predictions(self.coco_preds, self.save_dir, file_names, self.coco_eval.category_ids)
        write_json_atomic(self.coco_result, self.save_dir / COCO_METRICS_JSON)
        LOGGER.info(f"smallbox: wrote {json_path}, {csv_path.name} and {COCO_METRICS_JSON} "
                    f"({len(self.coco_preds)} boxes, conf>={self.args.conf}, iou={self.args.iou}, max_det={self.args.max_det})")


class SmallboxTrainer(DetectionTrainer):
    """``DetectionTrainer`` building :class:`SmallboxDetectionModel` and validating with
    :class:`SmallboxValidator`."""

    def get_model(self, cfg=None, weights=None, verbose=True):
        if cfg is not None:  # `size_weighting.thresholds: fit` -> the data's fitted numbers
            cfg = resolve_named_thresholds(cfg if isinstance(cfg, dict) else yaml_model_load(cfg), self.data)
        model = SmallboxDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def get_validator(self):
        return SmallboxValidator(self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks)

    def _setup_train(self):
        super()._setup_train()
        if RANK in {-1, 0}:
            self.metrics = self._initial_metrics()

    def _initial_metrics(self) -> dict:
        """results.csv takes its header from the first row: when an epoch skips validation
        (``val=False``) the row must still carry our columns, in the order validation returns them."""
        evaluator = self.validator.coco_evaluator(self.data, self.args.split or "val", self.args.single_cls)
        box_keys = list(self.validator.metrics.keys)
        extra = evaluator.columns if evaluator else []
        return dict.fromkeys([*box_keys, *extra, *self.label_loss_items(prefix="val")], 0)

    def final_eval(self):
        super().final_eval()
        if RANK in {-1, 0}:
            write_json_atomic(self.run_info(), self.save_dir / RUN_INFO)

    def run_info(self) -> dict:
        """What ``smallbox.json`` says about this run (see the run-folder contract)."""
        try:
            buckets = [b.to_dict() for b in load_manifest(self.data).buckets]
        except SmallboxError:
            buckets = []
        predictions = PREDICTIONS_JSON if (self.save_dir / PREDICTIONS_JSON).exists() else None
        return {"path": "yolo", "model": str(self.args.model), "backbone": _backbone_name(unwrap_model(self.model)),
                "imgsz": int(self.args.imgsz), "epochs": int(self.epochs), "seed": int(self.args.seed),
                "data": str(self.args.data), "buckets": buckets, "predictions": predictions}


def _backbone_name(model) -> str:
    """The model's first layer as written in its YAML: ``Conv`` for Ultralytics' own backbones,
    else the module and its first string argument, e.g. ``TorchVision(swin_t)``."""
    yaml = getattr(model, "yaml", None) or {}
    layers = yaml.get("backbone") or []
    if not layers:
        return "unknown"
    _, _, module, args = layers[0][:4]
    name = next((a for a in args if isinstance(a, str)), None) if isinstance(args, list) else None
    return f"{module}({name})" if name else ("ultralytics" if module == "Conv" else str(module))


class SmallboxPredictor(DetectionPredictor):
    """``DetectionPredictor`` that also writes predictions.json / .csv of every image run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._records = []  # (path, orig_shape (h, w), xyxy_abs [N, 4], conf [N], cls [N]) per image

    def stream_inference(self, source=None, model=None, *args, **kwargs):
        self._records = []
        yield from super().stream_inference(source, model, *args, **kwargs)
        if RANK in {-1, 0}:
            self._export()

    def construct_results(self, preds, img, orig_imgs):
        results = super().construct_results(preds, img, orig_imgs)
        for r in results:
            boxes = r.boxes
            self._records.append((r.path, r.orig_shape, boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                                  boxes.cls.cpu().numpy()))
        return results

    def _export(self):
        if not self._records:
            return
        if getattr(self.dataset, "mode", "image") != "image":
            LOGGER.warning("smallbox: predictions.json is written for image sources only (not video or streams)")
            return
        manifest = _manifest_or_none(self.args.data)
        known = {n: i for split in manifest.splits.values() for n, i in split.items()} if manifest else None
        ids, file_names, source = assign_image_ids([r[0] for r in self._records], known=known)
        category_ids = self._category_ids(manifest)
        preds = []
        for path, _, xyxy, conf, cls in self._records:
            preds += to_coco_results(xyxy, conf, cls, ids[path], category_ids)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = write_predictions(preds, self.save_dir, file_names, category_ids)
        if source == "sorted":
            sizes = {ids[p]: (int(s[1]), int(s[0])) for p, s, *_ in self._records}
            names = self.model.names
            cats = [{"id": cid, "name": names[i]} for i, cid in enumerate(category_ids)]
            write_images_json(self.save_dir, file_names, sizes, cats)
        LOGGER.info(f"smallbox: wrote {json_path} and {csv_path.name} ({len(preds)} boxes on {len(file_names)} images, "
                    f"image ids from the {_SOURCE_TEXT[source]}; conf>={self.args.conf}, iou={self.args.iou}, "
                    f"max_det={self.args.max_det}, imgsz={self.args.imgsz})")

    def _category_ids(self, manifest) -> list[int]:
        """Class index -> category id: the dataset's manifest, else the ids json's categories
        (ascending, when there are as many as classes), else ``1..nc`` as Ultralytics numbers them."""
        nc = len(self.model.names)
        if manifest and len(manifest.category_ids) == nc:
            return manifest.category_ids
        ids_json = _env_ids_json()
        if ids_json:
            cats = read_json(ids_json).get("categories") or []
            if len(cats) == nc:
                return sorted(c["id"] for c in cats)
        return list(range(1, nc + 1))


_SOURCE_TEXT = {"json": f"json in ${IMAGE_IDS_ENV}", "manifest": "dataset's manifest",
                "sorted": "sorted file names (see images.json)"}


def _env_ids_json():
    path = os.environ.get(IMAGE_IDS_ENV)
    if path:
        image_ids_from_json(path)  # a clear error now rather than half an export
    return path


def _manifest_or_none(data):
    """The manifest of the data YAML a model was trained on (kept in its checkpoint), if any."""
    if not data or not str(data).endswith((".yaml", ".yml")) or not Path(str(data)).is_file():
        return None
    try:
        return load_manifest(data)
    except SmallboxError:
        return None


def use_smallbox_classes() -> None:
    """Point Ultralytics' detect task at smallbox's classes (idempotent).

    ``YOLO.task_map`` reads ``ultralytics.models.yolo.detect.Detection{Trainer,Validator,Predictor}``
    and ``ultralytics.models.yolo.model.DetectionModel`` when it is called, so after this every
    ``YOLO(...).train/val/predict`` of a detection model, and the ``yolo`` CLI, uses ours.
    """
    import ultralytics.models.yolo.detect as detect
    import ultralytics.models.yolo.model as yolo_model

    detect.DetectionTrainer = SmallboxTrainer
    detect.DetectionValidator = SmallboxValidator
    detect.DetectionPredictor = SmallboxPredictor
    yolo_model.DetectionModel = SmallboxDetectionModel
