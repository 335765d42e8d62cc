"""smallbox's Ultralytics detection model: a ``DetectionModel`` that

* weights the box loss by ground-truth size when its YAML has ``size_weighting`` (the criterion
  is built lazily by ``init_criterion``, also on the EMA copy, on resume and after NaN recovery,
  so this is the one place where a custom loss sticks);
* gives timm backbones back their own BatchNorm eps (Ultralytics sets 1e-3 everywhere);
* turns a channel mismatch between a backbone and its ``Index`` rows into a readable error.
"""

from __future__ import annotations

from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from ..datasets.errors import SmallboxError
from .register import register_modules
from .size_loss import SizeWeighting, build_criterion, named_thresholds
from .timm_backbone import TimmBackbone

register_modules()


class SmallboxDetectionModel(DetectionModel):
    """``DetectionModel`` built from a YAML path or dict; same constructor arguments."""

    def __init__(self, cfg="yolo26n.yaml", ch=3, nc=None, verbose=True):
        cfg = cfg if isinstance(cfg, dict) else yaml_model_load(cfg)
        if named_thresholds(cfg) is None:  # a named set ("fit") is resolved later, by the trainer
            SizeWeighting.from_model_yaml(cfg)  # a bad size_weighting fails now, not at the first batch
        try:
            super().__init__(cfg, ch=ch, nc=nc, verbose=verbose)
        except RuntimeError as e:
            _raise_if_channel_mismatch(self, cfg, e)
            raise
        for m in self.modules():
            if isinstance(m, TimmBackbone):
                m.restore_norm_eps()

    @property
    def size_weighting(self) -> SizeWeighting | None:
        return SizeWeighting.from_model_yaml(self.yaml)

    def init_criterion(self):
        weighting = self.size_weighting
        return super().init_criterion() if weighting is None else build_criterion(self, weighting)


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
