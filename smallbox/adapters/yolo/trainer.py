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

import os
from copy import copy
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils import LOGGER, RANK, YAML
from ultralytics.utils.torch_utils import unwrap_model

from ...callbacks import export, geometry, plots
from ...errors import SmallboxError
from ..nwd import resolve_constant
from ..size_weighting import resolve_named_thresholds
from ..timm_features import find_weights_file
from ..timm_weights import WeightsError, read_checkpoint
from .layers import TimmBackbone, pretrained_backbone_files
from .metadata import KEY as METADATA_KEY, build_metadata
from .model import SmallboxDetectionModel, is_stock_architecture, resolve_base, with_backbone_weights
from .train_data import build_original_area_dataset
from .val_data import build_predict_val_loader
from .validator import SmallboxValidator

# `smallbox yolo train` tells its DDP workers whether the user set warmup_bias_lr (see check_resume).
BIAS_WARMUP_GIVEN_ENV = "SMALLBOX_WARMUP_BIAS_LR_GIVEN"
PLAIN_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")


class SmallboxTrainer(DetectionTrainer):
    """``DetectionTrainer`` building :class:`SmallboxDetectionModel` and validating with
    :class:`SmallboxValidator`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a DDP worker is handed its parent's callbacks, these among them: add each once
        for event, callback in (("on_train_start", geometry.log_input_geometry), ("on_train_end", export.on_train_end),
                                ("on_train_end", plots.on_train_end)):
            if callback not in self.callbacks[event]:
                self.add_callback(event, callback)
        if self.run_args is not None and RANK in {-1, 0}:
            YAML.save(self.save_dir / "args.yaml", self.run_args)  # over the checkpoint's settings Ultralytics wrote

    @property
    def run_model(self) -> str:
        """The ``model=`` the run was started with (a resume trains from last.pt, but the run is
        still the recipe it started as: ``report`` groups its seeds by it)."""
        return str((self.run_args or {}).get("model") or self.args.model)

    def get_model(self, cfg=None, weights=None, verbose=True):
        if cfg is not None:  # `size_weighting.thresholds: fit` -> the data's fitted numbers; NWD's C: auto -> px
            cfg = resolve_named_thresholds(resolve_base(cfg if isinstance(cfg, dict) else yaml_model_load(cfg)), self.data)
            cfg = resolve_constant(cfg, self.data, self.args.imgsz)
        model = SmallboxDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1)
        model.yaml = {**model.yaml, METADATA_KEY: build_metadata(self.data, self.args.imgsz)}  # travels in every checkpoint
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def check_resume(self, overrides):
        """Ultralytics' resume check. ``BaseTrainer.__init__`` shows the user's own settings only
        here: note whether they chose ``warmup_bias_lr`` (a DDP worker is handed all of its
        parent's settings, so the parent passes the answer on in the environment), and check a
        ``pretrained=`` file of timm backbone weights before anything is written."""
        super().check_resume(overrides)
        given = "warmup_bias_lr" in overrides
        if RANK == -1:
            os.environ[BIAS_WARMUP_GIVEN_ENV] = str(int(given))
        self.bias_warmup_given = os.environ.get(BIAS_WARMUP_GIVEN_ENV, str(int(given))) == "1"
        self.backbone_cfg = None if self.resume else self._cfg_with_pretrained_backbone()
        self.run_args = self._started_args(overrides) if self.resume else None

    def _started_args(self, overrides: dict) -> dict | None:
        """The settings a resumed run was started with: its folder's args.yaml, plus the settings
        Ultralytics lets a resume change (batch, device, workers ...) where the command gave them.
        Ultralytics would record the checkpoint's instead: ``model`` as last.pt and ``optimizer=auto``
        resolved (AdamW, its lr0), so the run would no longer look like its sibling seeds.
        Training itself still follows Ultralytics (``optimizer=auto`` resolves the same way again)."""
        started = Path(self.args.resume).resolve().parent.parent / "args.yaml"  # <run>/weights/last.pt
        if not started.is_file():
            LOGGER.warning(f"smallbox: resuming {self.args.resume} without its run's args.yaml ({started}): the run's "
                           "record holds the checkpoint's settings")
            return None
        from ultralytics.utils.patches import torch_load

        run_args = YAML.load(started)
        saved = (torch_load(self.args.resume, map_location="cpu") or {}).get("train_args") or {}
        changed = {k: getattr(self.args, k) for k in overrides  # what Ultralytics let the command change
                   if k not in {"model", "resume", "mode", "data"} and getattr(self.args, k, None) != saved.get(k)}
        return {**run_args, **changed, "resume": str(self.args.resume), "save_dir": run_args.get("save_dir", str(started.parent))}

    def _cfg_with_pretrained_backbone(self) -> dict | None:
        """The model YAML with the ``pretrained=`` file as its TimmBackbone's weights when that file
        holds plain weights (``.safetensors``/``.pth``/``.bin``, or a ``.pt`` that is not an
        Ultralytics checkpoint); None leaves ``pretrained=`` to Ultralytics (True, False, a YOLO
        checkpoint), which would ``torch.load`` any file as a YOLO checkpoint."""
        value = self.args.pretrained
        file = find_weights_file(value) if isinstance(value, (str, Path)) else None
        if file is None or file.suffix not in PLAIN_WEIGHT_SUFFIXES:
            return None
        if file.suffix == ".pt":
            try:
                read_checkpoint(file)
            except WeightsError:  # pickled modules: an Ultralytics checkpoint
                return None
        model = str(self.args.model)
        if model.endswith(".pt"):
            raise SmallboxError(f"pretrained={value} (timm backbone weights) with model={model}: the checkpoint already "
                                "holds its backbone's weights; pretrained= goes with a model YAML")
        return with_backbone_weights(resolve_base(yaml_model_load(model)), file)

    def setup_model(self):
        """Ultralytics' ``setup_model``, except that a ``pretrained=`` file of timm backbone weights
        is loaded into the backbone (strictly, by the layer); then :meth:`_no_bias_warmup_for_pretrained`."""
        if self.backbone_cfg is None:
            ckpt = super().setup_model()
        else:
            pretrained, self.args.pretrained, self.model = self.args.pretrained, True, self.backbone_cfg
            try:
                ckpt = super().setup_model()
            finally:
                self.args.pretrained = pretrained
            for m in unwrap_model(self.model).modules():
                if isinstance(m, TimmBackbone):
                    LOGGER.info(f"smallbox pretrained={pretrained}: {m.describe()}")
        self._no_bias_warmup_for_pretrained()
        return ckpt

    def _no_bias_warmup_for_pretrained(self) -> None:
        """Ultralytics warms every bias up from ``warmup_bias_lr`` (0.1; zeroed only for
        ``optimizer=auto``): with AdamW at lr0=0.0001 a pretrained backbone's biases would start
        at 1,000x lr0. A run with a pretrained timm backbone gets 0.0 unless the user chose a value
        (a resume keeps the value its run used)."""
        files = pretrained_backbone_files(unwrap_model(self.model))
        if self.resume or self.bias_warmup_given or not files or not self.args.warmup_bias_lr:
            return
        LOGGER.info(f"smallbox: warmup_bias_lr {self.args.warmup_bias_lr} -> 0.0, the backbone is pretrained "
                    f"({', '.join(files)}): Ultralytics' bias warm-up would start every bias at "
                    f"{self.args.warmup_bias_lr / self.args.lr0:,.0f}x lr0 (give warmup_bias_lr= to choose)")
        self.args.warmup_bias_lr = 0.0
        if RANK in {-1, 0}:
            YAML.save(self.save_dir / "args.yaml", vars(self.args))  # the run's record says what it used

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

    def save_model(self):
        """Ultralytics' checkpoints, pickled as a stock ``DetectionModel`` when the architecture is
        Ultralytics' own (no timm layer): plain Ultralytics then loads, predicts, validates, exports
        and fine-tunes them without smallbox. The size weighting, NWD and the metadata travel as
        plain data in the model's YAML dict; smallbox rebuilds its model from that YAML when it
        fine-tunes one."""
        ema = self.ema.ema if self.ema else None
        stock = ema is not None and type(ema) is SmallboxDetectionModel and is_stock_architecture(ema)
        if stock:
            ema.__class__ = DetectionModel  # the same state; only the pickled class name changes
        try:
            return super().save_model()
        finally:
            if stock:
                ema.__class__ = SmallboxDetectionModel

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
