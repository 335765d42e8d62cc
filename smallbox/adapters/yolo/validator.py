"""smallbox's Ultralytics detection validator.

It sees exactly what ``smallbox yolo predict`` sees, so that every number it reports (each
results.csv row, the choice of best.pt, standalone ``val``) is what ``predict`` + ``smallbox
eval`` give for the same weights:

- images: letterboxed once from the original, as predict does, batched only with images of the
  same letterboxed shape (:mod:`.val_data`), not resized then padded to a rect canvas;
- NMS: predict's call, one image at a time (single label per box, ``classes``,
  ``agnostic_nms``, ``max_det`` as given, never raised to the largest object count);
- boxes scaled back with predict's arithmetic;
- in training, the EMA as it is saved (fp16 round trip) and in fp32, as predict runs ``last.pt``.

On a converted dataset it evaluates against the ORIGINAL COCO json of the split every epoch and
in standalone ``val`` (:mod:`smallbox.callbacks.coco_metrics`); standalone it also writes
``predictions.json`` (original ids), ``predictions.csv`` (competition format) and
``coco_metrics.json`` into its run folder. Ultralytics' own numbers (``metrics/precision(B)`` ...
``metrics/mAP50-95(B)``) are still computed by Ultralytics' code, on these same predictions.
"""

from __future__ import annotations

from copy import deepcopy

import torch
import torch.distributed as dist
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER, RANK, nms, ops

from ...callbacks.coco_metrics import CocoSplitEvaluator, fitness_column, flatten_metrics, format_columns
from ...callbacks.export import export_predictions
from ...evaluate.table import format_metrics
from ...fileio import write_json_atomic
from ...runfolder import COCO_METRICS_JSON
from .val_data import ShapeBatchSampler, build_predict_val_loader

# Ultralytics adds these (zeros unless its own COCO path ran) under save_json; ours replace them.
STOCK_SIZE_KEYS = tuple(f"metrics/mAP_{b}(B)" for b in ("small", "medium", "large"))


class SmallboxValidator(DetectionValidator):
    """``DetectionValidator`` that adds COCO AP by size (original json, original ids)."""

    coco_eval: CocoSplitEvaluator | None = None
    sliced: dict | None = None  # the slice settings of a tiled model's validation (:mod:`.tiled_val`)

    def __call__(self, trainer=None, model=None, **kwargs):
        """A model trained on tiles is scored on the whole val images through sliced inference
        (:mod:`.tiled_val`); any other as Ultralytics validates, with predict's letterbox and NMS."""
        from .tiled_val import sliced_validation, tiles_of

        if trainer is not None and tiles_of(trainer.data) is not None and not self.args.single_cls:
            return sliced_validation(self, trainer)
        if trainer is None and str(self.args.data).endswith((".yaml", ".yml")):
            from ultralytics.data.utils import check_det_dataset

            data = check_det_dataset(self.args.data, split=self.args.split)
            if tiles_of(data) is not None and not self.args.single_cls:
                self.data = data
                return sliced_validation(self, weights=model or self.args.model)
        return super().__call__(trainer, model, **kwargs)

    # -- what predict sees -------------------------------------------------------------------

    def get_dataloader(self, dataset_path, batch_size):
        """Standalone val (in training the trainer builds the same loader): predict's letterbox,
        ``auto`` as ``rect`` (``Model.val`` and ``Model.predict`` both default it to True)."""
        return build_predict_val_loader(self.args, dataset_path, batch_size, self.data, self.stride, self.args.workers,
                                        auto=bool(self.args.rect), split=self.args.split or "val")

    @staticmethod
    def _check_max_det(args, datasets):
        """Ultralytics raises max_det to the largest object count when it is left at 300; predict
        never does: keep it, and say when images hold more objects."""
        most = max((len(lb["cls"]) for d in datasets.values() for lb in getattr(d, "labels", [])), default=0)
        if most > args.max_det and RANK in {-1, 0}:
            LOGGER.warning(f"smallbox: images hold up to {most} objects, more than max_det={args.max_det} (kept, as predict keeps it)")

    def get_model(self, model, trainer=None):
        """In training, the EMA as ``save_model`` writes it and predict loads it: fp16, NaNs
        zeroed, read back as fp32."""
        if trainer is None:
            return super().get_model(model, trainer)
        saved = deepcopy(trainer.ema.ema).half()
        for v in saved.state_dict().values():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                torch.nan_to_num_(v)
        return saved.float()

    def preprocess(self, batch):
        if self.training:  # predict runs last.pt in fp32; Ultralytics' training val autocasts to fp16 on GPU
            self.args.quantize = None
        return super().preprocess(batch)

    def postprocess(self, preds):
        """``DetectionPredictor.postprocess``'s NMS, one image at a time (its time limit is then per
        image, as with predict's batch of one)."""
        x = preds[0] if isinstance(preds, (list, tuple)) else preds
        agnostic = bool(self.args.agnostic_nms or self.args.single_cls)
        out = []
        for i in range(x.shape[0]):
            (p,) = nms.non_max_suppression(x[i:i + 1], self.args.conf, self.args.iou, self.args.classes, agnostic,
                                           max_det=self.args.max_det, nc=0, end2end=self.end2end, rotated=False,
                                           multi_label=False)
            out.append({"bboxes": p[:, :4], "conf": p[:, 4], "cls": p[:, 5], "extra": p[:, 6:]})
        return out

    def _prepare_batch(self, si, batch):
        pbatch = super()._prepare_batch(si, batch)
        if "lb_shape" in batch:
            pbatch["lb_shape"] = tuple(batch["lb_shape"][si])
        return pbatch

    def scale_preds(self, predn, pbatch):
        """Predict's ``scale_boxes(letterboxed shape, boxes, original shape)``, without ``ratio_pad``."""
        return {**predn, "bboxes": ops.scale_boxes(pbatch["lb_shape"], predn["bboxes"].clone(), pbatch["ori_shape"])}

    # -- COCO metrics against the original json ---------------------------------------------

    def init_metrics(self, model):
        super().init_metrics(model)
        sampler = getattr(self.dataloader, "batch_sampler", None)
        if getattr(self, "eval_ids", None) is not None and isinstance(sampler, ShapeBatchSampler):
            self.eval_ids = sampler.order()  # Ultralytics' custom-json path maps images by loader order
        native = model.model if getattr(model, "format", None) == "pt" else model
        if self.end2end and hasattr(native, "set_head_attr"):  # as DetectionPredictor.stream_inference
            native.set_head_attr(max_det=max(self.args.max_det, 300), agnostic_nms=self.args.agnostic_nms)
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

    def evaluation_settings(self) -> dict:
        """The settings behind the predictions and the numbers (recorded in smallbox.json)."""
        a = self.args
        if self.sliced:
            return {"conf": a.conf, "iou": a.iou, "imgsz": a.imgsz, "sliced": dict(self.sliced),
                    "how": "whole val images through sliced inference, as smallbox slice with its defaults"}
        return {"conf": a.conf, "iou": a.iou, "max_det": a.max_det, "imgsz": a.imgsz, "agnostic_nms": a.agnostic_nms,
                "letterbox": "as predict (auto=rect)", "nms": "as predict (one label per box)"}

    def _export(self):
        """predictions.json / .csv and coco_metrics.json of a standalone validation."""
        file_names = self.coco_eval.file_names(self.coco_image_ids)
        json_path, csv_path = export_predictions(self.save_dir, self.coco_preds, file_names, self.coco_eval.category_ids)
        write_json_atomic(self.coco_result, self.save_dir / COCO_METRICS_JSON)
        LOGGER.info(f"smallbox: wrote {json_path}, {csv_path.name} and {COCO_METRICS_JSON} "
                    f"({len(self.coco_preds)} boxes, conf>={self.args.conf}, iou={self.args.iou}, max_det={self.args.max_det})")
