"""smallbox's Ultralytics detection model: a ``DetectionModel`` that

* weights the box loss by ground-truth size when its YAML has ``size_weighting``, and uses NWD
  in the assigner and box loss when it has ``loss: {nwd: ...}`` (the criterion
  is built lazily by ``init_criterion``, also on the EMA copy, on resume and after NaN recovery,
  so this is the one place where a custom loss sticks);
* gives timm backbones back their own BatchNorm eps (Ultralytics sets 1e-3 everywhere);
* keeps no weights file in its YAML (:func:`forget_weight_files`), so a checkpoint fine-tunes,
  resumes and starts DDP workers without the ImageNet file it was first built from;
* turns a channel mismatch between a backbone and its ``Index`` rows into a readable error;
* lets a model YAML start from another one: ``base: csp-yolov8s.yaml`` (relative to the YAML)
  plus the top-level keys it replaces (``backbone``, ``head``, ``size_weighting``, ...).
"""

from __future__ import annotations

import copy
from pathlib import Path

from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from ...errors import SmallboxError
from ..nwd import NWDConfig
from ..size_weighting import SizeWeighting, named_thresholds
from .layers import TimmBackbone
from .loss import build_criterion
from .register import register_layers

BASE_KEY = "base"


class SmallboxDetectionModel(DetectionModel):
    """``DetectionModel`` built from a YAML path or dict; same constructor arguments."""

    def __init__(self, cfg="yolo26n.yaml", ch=3, nc=None, verbose=True):
        register_layers()  # a YAML naming smallbox's layers parses in any process
        cfg = resolve_base(cfg if isinstance(cfg, dict) else yaml_model_load(cfg))
        if named_thresholds(cfg) is None:  # a named set ("fit") is resolved later, by the trainer
            SizeWeighting.from_model_yaml(cfg)  # a bad size_weighting fails now, not at the first batch
        NWDConfig.from_model_yaml(cfg)  # likewise a bad loss.nwd
        try:
            super().__init__(cfg, ch=ch, nc=nc, verbose=verbose)
        except RuntimeError as e:
            _raise_if_channel_mismatch(self, cfg, e)
            raise
        for m in self.modules():
            if isinstance(m, TimmBackbone):
                m.restore_norm_eps()
        self.yaml = forget_weight_files(self.yaml, self.model)

    @property
    def size_weighting(self) -> SizeWeighting | None:
        return SizeWeighting.from_model_yaml(self.yaml)

    @property
    def nwd(self) -> NWDConfig | None:
        return NWDConfig.from_model_yaml(self.yaml)

    def init_criterion(self):
        weighting, nwd = self.size_weighting, self.nwd
        if weighting is None and nwd is None:
            return super().init_criterion()
        return build_criterion(self, weighting, nwd)


def is_stock_architecture(model) -> bool:
    """Whether every layer is Ultralytics' own (no smallbox layer such as TimmBackbone): then the
    model pickles and loads as a plain ``DetectionModel``."""
    return not any(type(m).__module__.startswith("smallbox.") for m in model.modules() if m is not model)


def as_stock_checkpoint(path, metadata: dict | None = None) -> bool:
    """Rewrite a YOLO checkpoint of a stock architecture so that plain Ultralytics loads it: the
    model (and EMA) pickled as ``DetectionModel``, ``metadata`` (when given) under its YAML's
    ``smallbox`` key. Returns False (file untouched) for a model with smallbox layers."""
    import torch

    from .metadata import KEY

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    models = [ckpt[k] for k in ("model", "ema") if ckpt.get(k) is not None]
    if not all(is_stock_architecture(m) for m in models):
        return False
    for m in models:
        m.__class__ = DetectionModel
        if metadata is not None:
            m.yaml = {**m.yaml, KEY: metadata}
    from ...fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return True


def forget_weight_files(model_yaml: dict, layers) -> dict:
    """A copy of ``model_yaml`` whose TimmBackbone rows name no file to read: ``weights: null``
    and ``weights_from: <the file loaded>`` (a record, never read).

    Why: Ultralytics rebuilds a model from its checkpoint's YAML before copying the checkpoint's
    tensors into it (``YOLO(best.pt).train(...)`` through ``trainer.get_model(cfg=model.yaml)``;
    resume and every DDP worker through ``BaseTrainer.setup_model``). A row still naming the
    ImageNet file would read it again, and fail where it is gone, for tensors overwritten right
    after. Every checkpoint pickles the model with this YAML.

    Args:
        layers: the built model's layers (``model.model``); ``layer.i`` is the row's index.
    """
    loaded = {m.i: m.weights for m in layers if isinstance(m, TimmBackbone) and m.weights}
    if not loaded:
        return model_yaml
    y = copy.deepcopy(model_yaml)
    rows = y["backbone"] + y["head"]
    for i, path in loaded.items():
        args = list(rows[i][3])
        args[2] = {**args[2], "weights": None, "weights_from": path}
        rows[i][3] = args
    return y


def with_backbone_weights(cfg: dict, weights) -> dict:
    """A copy of the model YAML dict ``cfg`` (``base:`` resolved) whose one TimmBackbone row loads
    the local file ``weights``: ``pretrained=FILE`` on the command line."""
    rows = [(i, row) for i, row in enumerate(cfg["backbone"] + cfg["head"]) if row[2] == TimmBackbone.__name__]
    where = cfg.get("yaml_file") or "the model YAML"
    if not rows:
        raise SmallboxError(f"pretrained={weights} holds plain weights (a state dict), but {where} has no TimmBackbone "
                            "layer to load them into; Ultralytics' pretrained= takes a YOLO checkpoint (.pt)")
    if len(rows) > 1:
        layers = ", ".join(f"layer {i} ({row[3][0]})" for i, row in rows)
        raise SmallboxError(f"pretrained={weights}: {where} has {len(rows)} TimmBackbone layers ({layers}); "
                            "name each one's file in its row instead ({weights: FILE})")
    i, row = rows[0]
    args = list(row[3]) + [[1, 2, 3], {}][len(row[3]) - 1:]  # [name, out_indices, options], defaults filled in
    options = dict(args[2] or {})
    if options.get("weights") and Path(str(options["weights"])).name != Path(str(weights)).name:
        raise SmallboxError(f"pretrained={weights}: layer {i} of {where} already loads {options['weights']}; give one file")
    y = copy.deepcopy(cfg)
    (y["backbone"] + y["head"])[i][3] = [args[0], args[1], {**options, "weights": str(weights)}]
    return y


def _raise_if_channel_mismatch(model, cfg: dict, error: Exception) -> None:
    """After parse_model, compare each ``Index`` row's stated channels with the channels of the
    backbone it reads from; raise SmallboxError on the first mismatch."""
    layers = getattr(model, "model", None)
    if layers is None:
        return
    rows = cfg["backbone"] + cfg["head"]
    for i, (src, _, name, args) in enumerate(rows):
        if name != "Index" or not isinstance(src, int):
            continue
        j = src if src >= 0 else i + src
        backbone = layers[j]
        if isinstance(backbone, TimmBackbone):
            stated, index = int(args[0]), int(args[1]) if len(args) > 1 else 0
            actual = backbone.channels[index]
            if stated != actual:
                raise SmallboxError(
                    f"{cfg.get('yaml_file', 'model YAML')}: layer {i} Index{args} states {stated} channels but "
                    f"{backbone.name} output {index} has {actual} (channels {backbone.channels}, strides {backbone.strides})"
                ) from error


def resolve_base(cfg: dict, seen=()) -> dict:
    """A model YAML dict with its ``base`` chain merged in: the base's keys, then this YAML's
    (top-level keys replace the base's whole). Ultralytics reads the base's ``scale`` from the
    derived file's name, so the merged dict keeps the derived ``yaml_file`` and ``scale``."""
    base = cfg.get(BASE_KEY)
    if not base:
        return cfg
    here = Path(str(cfg.get("yaml_file", "."))).parent
    path = (here / str(base)).resolve()
    if path in seen:
        raise SmallboxError(f"{cfg.get('yaml_file', 'model YAML')}: `base:` files form a loop")
    if not path.is_file():  # Ultralytics' own YAMLs by name (base: yolov8n.yaml), else an error
        try:
            return _merged(resolve_base(yaml_model_load(str(base)), (*seen, path)), cfg)
        except FileNotFoundError:
            raise SmallboxError(f"{cfg.get('yaml_file', 'model YAML')}: base: {base}: no such file (looked at {path}, "
                                "and among Ultralytics' model YAMLs)") from None
    return _merged(resolve_base(yaml_model_load(str(path)), (*seen, path)), cfg)


def _merged(parent: dict, cfg: dict) -> dict:
    merged = {**parent, **{k: v for k, v in cfg.items() if k != BASE_KEY}}
    if not cfg.get("scale") and parent.get("scale"):
        merged["scale"] = parent["scale"]
    return merged

