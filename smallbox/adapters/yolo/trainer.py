"""smallbox's Ultralytics detection trainer: builds :class:`~.model.SmallboxDetectionModel` (whose
criterion can weight the box loss by size), validates with :class:`~.validator.SmallboxValidator`
(COCO AP by size against the original json every epoch), keeps the results.csv columns the same
every epoch, logs the input geometry at the start and writes ``smallbox.json`` at the end
(:mod:`smallbox.callbacks`).

Multi-GPU (``device=0,1``): Ultralytics re-creates this trainer in each worker from its module
and class name; the model registers smallbox's layers before parsing its YAML there too. The
workers inherit the environment (offline settings, SMALLBOX_FITNESS).
"""

from __future__ import annotations

from copy import copy

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import RANK
from ultralytics.utils.torch_utils import unwrap_model

from ...callbacks import export, geometry, plots
from ..size_weighting import resolve_named_thresholds
from .model import SmallboxDetectionModel, resolve_base
from .train_data import build_original_area_dataset
from .val_data import build_predict_val_loader
from .validator import SmallboxValidator


class SmallboxTrainer(DetectionTrainer):
    """``DetectionTrainer`` building :class:`SmallboxDetectionModel` and validating with
    :class:`SmallboxValidator`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback("on_train_start", geometry.log_input_geometry)
        self.add_callback("on_train_end", export.on_train_end)
        self.add_callback("on_train_end", plots.on_train_end)

    def get_model(self, cfg=None, weights=None, verbose=True):
        if cfg is not None:  # `size_weighting.thresholds: fit` -> the data's fitted numbers
            cfg = resolve_named_thresholds(resolve_base(cfg if isinstance(cfg, dict) else yaml_model_load(cfg)), self.data)
        model = SmallboxDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def get_dataloader(self, dataset_path, batch_size=16, rank=0, mode="train"):
        """The val loader letterboxes as predict does (:mod:`.val_data`); training is Ultralytics'."""
        if mode != "val":
            return super().get_dataloader(dataset_path, batch_size, rank, mode)
        stride = max(int(unwrap_model(self.model).stride.max()), 32)  # AutoBackend's stride of the saved model
        # auto=True: predict letterboxes with auto=rect and Model.predict forces rect=True (the
        # trainer's own `rect` is about training batches)
        return build_predict_val_loader(self.args, dataset_path, batch_size, self.data, stride, self.args.workers * 2,
                                        rank=rank, auto=True, pin_memory=True, split=self.args.split or "val")

    def build_dataset(self, img_path, mode="train", batch=None):
        """Training images whose boxes carry their original area (:mod:`.train_data`) when the
        model weights its box loss by the evaluator's buckets; otherwise Ultralytics' dataset."""
        weighting = getattr(unwrap_model(self.model), "size_weighting", None)
        if mode != "train" or weighting is None or weighting.by != "original":
            return super().build_dataset(img_path, mode, batch)
        stride = max(int(unwrap_model(self.model).stride.max()), 32)
        return build_original_area_dataset(self.args, img_path, batch, self.data, stride)

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
