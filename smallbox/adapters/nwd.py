"""The normalized Gaussian Wasserstein distance (NWD) of Wang et al., "A Normalized Gaussian
Wasserstein Distance for Tiny Object Detection" (2021, arXiv:2110.13389), for the assigner and
the box loss of both training paths.

Why: IoU is unforgiving for a tiny box: one pixel of offset costs a 6 px box a third of its IoU,
and boxes that do not overlap all score 0 however near they are. NWD models a box
``(cx, cy, w, h)`` as the 2-D Gaussian ``N((cx, cy), diag(w²/4, h²/4))``; the 2-Wasserstein
distance between two such Gaussians is

    W₂² = (cx_a - cx_b)² + (cy_a - cy_b)² + ((w_a - w_b)² + (h_a - h_b)²) / 4

and ``NWD = exp(-sqrt(W₂²) / C)``, which degrades smoothly with offset and never drops to 0. ``C``
is the dataset's average absolute object size (the paper: 12.8 px on AI-TOD); smallbox measures
it at convert (``box_size.mean_side_rel`` of the data.yaml: the mean ``sqrt(w*h)`` over the
image's long side) and multiplies by the training imgsz, unless the recipe sets a number.

Configured by a ``loss: {nwd: ...}`` key of a YOLO model YAML::

    loss:
      nwd:
        constant: auto     # C in network-input px, or auto (the data's mean box side at imgsz)
        assigner: true     # in Ultralytics' task-aligned assigner's alignment metric
        box: true          # in the box regression loss (1 - NWD)
        ratio: 0.5         # how much NWD replaces IoU: metric = (1 - r) IoU + r NWD; 0 is
                           # Ultralytics exactly, 1 the paper (NWD alone)

The torchvision path's matchers are not changed: Faster R-CNN's RPN and ROI heads match by IoU
thresholds (0.7 / 0.3, 0.5) that NWD's scale does not share, so a drop-in replacement would
silently change what "positive" means (docs/adapters.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import SmallboxError

CONFIG_KEY = "loss"
NWD_KEY = "nwd"
EPS = 1e-7  # keeps sqrt differentiable where two boxes coincide (as the authors' code does)


def wasserstein2(box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance of the boxes' Gaussians, elementwise over ``[..., 4]`` xyxy."""
    center_a = (box_a[..., :2] + box_a[..., 2:]) / 2
    center_b = (box_b[..., :2] + box_b[..., 2:]) / 2
    wh_a = box_a[..., 2:] - box_a[..., :2]
    wh_b = box_b[..., 2:] - box_b[..., :2]
    return ((center_a - center_b) ** 2).sum(-1) + ((wh_a - wh_b) ** 2).sum(-1) / 4


def nwd(box_a: torch.Tensor, box_b: torch.Tensor, constant: float) -> torch.Tensor:
    """``exp(-sqrt(W₂²) / C)`` elementwise over ``[..., 4]`` xyxy boxes (same units as ``C``)."""
    return torch.exp(-torch.sqrt(wasserstein2(box_a, box_b) + EPS) / constant)


@dataclass(frozen=True)
class NWDConfig:
    """``loss.nwd`` of a model YAML (see the module docstring). ``constant`` is a number of
    network-input pixels once resolved; ``"auto"`` before the trainer resolves it."""

    constant: float | str = "auto"
    assigner: bool = True
    box: bool = True
    ratio: float = 1.0

    @classmethod
    def from_model_yaml(cls, model_yaml: dict) -> "NWDConfig | None":
        loss = (model_yaml or {}).get(CONFIG_KEY)
        if loss is None:
            return None
        where = f"{model_yaml.get('yaml_file', 'model YAML')}: {CONFIG_KEY}"
        if not isinstance(loss, dict) or set(loss) - {NWD_KEY}:
            raise SmallboxError(f"{where}: a mapping with `{NWD_KEY}:` (the only loss option so far)")
        spec = loss.get(NWD_KEY)
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise SmallboxError(f"{where}.{NWD_KEY}: a mapping (constant, assigner, box, ratio)")
        unknown = set(spec) - {"constant", "assigner", "box", "ratio", "constant_from"}
        if unknown:
            raise SmallboxError(f"{where}.{NWD_KEY}: unknown key(s) {sorted(unknown)} (known: constant, assigner, box, ratio)")
        config = cls(**{k: spec[k] for k in ("constant", "assigner", "box", "ratio") if k in spec})
        config.check(f"{where}.{NWD_KEY}")
        return config

    def check(self, where: str) -> None:
        c = self.constant
        if not (c == "auto" or (isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c > 0)):
            raise SmallboxError(f"{where}.constant: a positive number of input px or auto, got {c!r}")
        for key in ("assigner", "box"):
            if not isinstance(getattr(self, key), bool):
                raise SmallboxError(f"{where}.{key}: true or false, got {getattr(self, key)!r}")
        r = self.ratio
        if not (isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r <= 1):
            raise SmallboxError(f"{where}.ratio: a number in [0, 1], got {r!r}")
        if not (self.assigner or self.box):
            raise SmallboxError(f"{where}: assigner and box are both false: NWD would change nothing")

    def mix(self, iou: torch.Tensor, box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
        """``(1 - r) IoU + r NWD``; with ``r = 0`` exactly ``iou``."""
        if not isinstance(self.constant, (int, float)):
            raise SmallboxError("NWD constant 'auto' was not resolved (the trainer does it from the data.yaml)")
        return (1 - self.ratio) * iou + self.ratio * nwd(box_a, box_b, float(self.constant)).to(iou.dtype)

    def describe(self) -> str:
        where = " and ".join(w for w, on in (("assigner", self.assigner), ("box loss", self.box)) if on)
        c = self.constant if isinstance(self.constant, str) else f"{self.constant:.3g} px"
        return f"NWD (C = {c}) {'replaces' if self.ratio == 1 else f'mixes with ({self.ratio:g} of)'} IoU in the {where}"


def resolve_constant(model_yaml: dict, data: dict, imgsz: int) -> dict:
    """``loss.nwd.constant: auto`` -> the data's mean box side at the training ``imgsz`` (a copy;
    ``model_yaml`` itself when there is nothing to resolve), so the checkpoint records the number."""
    from ..datasets.manifest import dataset_section

    config = NWDConfig.from_model_yaml(model_yaml)
    if config is None or config.constant != "auto":
        return model_yaml
    section = dataset_section(data, data.get("yaml_file", "data.yaml"))
    box = (section.box_size or {}) if section else {}
    # tiles keep the original pixels: the side in px over the tile's side; else over the image's
    size = box["mean_side_px"] / section.train_long_side if section and section.tiles and section.train_long_side \
        and box.get("mean_side_px") else box.get("mean_side_rel")
    if not size:
        raise SmallboxError(f"{model_yaml.get('yaml_file', 'model YAML')}: {CONFIG_KEY}.{NWD_KEY}.constant: auto needs the "
                            "mean box size that `smallbox convert` records in the data.yaml (convert the data again, "
                            "or give a number of input px)")
    cfg = dict(model_yaml[CONFIG_KEY][NWD_KEY])
    cfg["constant"] = round(float(size) * int(imgsz), 4)
    cfg["constant_from"] = f"auto: mean box side {size:.4g} of the {'tile' if section.tiles else 'long side'} x imgsz {int(imgsz)}"
    return {**model_yaml, CONFIG_KEY: {**model_yaml[CONFIG_KEY], NWD_KEY: cfg}}
