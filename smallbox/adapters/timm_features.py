"""timm ``features_only`` models as detection backbones: the one builder both paths use
(:class:`smallbox.adapters.yolo.layers.TimmBackbone` in a YOLO model YAML, the torchvision path's
:class:`smallbox.adapters.tv.models.TimmFPNBackbone`), so weights, input sizes and freezing follow
the same rules everywhere:

* weights only from a local file: a path, or a relative path also looked up in
  ``$SMALLBOX_WEIGHTS_DIR`` (as given, and by its file name alone); nothing is downloaded; the
  file is loaded strictly (:mod:`.timm_weights`): one that does not fit stops the build;
* any input size, and no attention across image borders for Swin-like models: the input is
  padded at the bottom/right to a size their shifted windows tile (:mod:`.swin_window`) and each
  map cropped back, so ``forward((B, 3, H, W))`` returns ``(B, C_i, ceil(H / s_i), ceil(W / s_i))``
  NCHW maps (``H / s_i`` for multiples of the largest stride);
* optional ImageNet normalisation inside (YOLO feeds [0, 1] images);
* BatchNorm freezing and early-stage freezing for pretrained backbones (the torchvision path).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import SmallboxError
from .swin_window import pad_bottom_right, window_multiple
from .timm_weights import create_features

WEIGHTS_DIR_ENV = "SMALLBOX_WEIGHTS_DIR"


def weights_candidates(weights) -> list[Path]:
    path = Path(os.path.expanduser(str(weights)))
    candidates = [path]
    if not path.is_absolute() and os.environ.get(WEIGHTS_DIR_ENV):
        folder = Path(os.path.expanduser(os.environ[WEIGHTS_DIR_ENV]))
        candidates += [folder / path, folder / path.name]
    return candidates


def find_weights_file(weights) -> Path | None:
    """The local file ``weights`` names, or None."""
    return next((c.resolve() for c in weights_candidates(weights) if c.is_file()), None)


def resolve_weights_file(weights, name: str = "") -> Path:
    """The local weights file for ``weights``; a SmallboxError saying where it looked when none exists."""
    found = find_weights_file(weights)
    if found is not None:
        return found
    looked = ", ".join(str(c) for c in weights_candidates(weights))
    raise SmallboxError(
        f"{name + ': ' if name else ''}pretrained weights file not found (looked at {looked}). Put the file there "
        f"(e.g. model.safetensors of the timm/{name.split('.')[0] or '<model>'} model card, or the original release .pth), "
        f"set {WEIGHTS_DIR_ENV}, or leave the weights out for random init. Nothing is downloaded."
    )


class TimmFeatures(nn.Module):
    """A timm ``features_only`` model: ``forward((B, 3, H, W)) -> list[(B, C_i, ceil(H/s_i), ceil(W/s_i))]``.

    Args:
        name (str): timm model name, optionally with a pretrained tag
            (``swin_base_patch4_window7_224.ms_in22k``); hub names are refused.
        out_indices (tuple[int]): feature levels to return (timm's ``out_indices``).
        weights (str | Path | None): local weights file (looked up as :func:`resolve_weights_file`
            says), loaded strictly; None: random init.
        freeze_bn (bool): every BatchNorm becomes a frozen one (statistics and affine fixed).
        trainable (int | None): feature levels, counted from the deepest, that keep training;
            everything before them (stem included) gets ``requires_grad=False``. None: all train.
        normalize (bool): subtract the model's ImageNet mean and divide by its std inside.
        window_pad (bool): pad Swin-like inputs so shifted windows tile every map (the border-leak
            fix; false only to reproduce timm's own behaviour).
        timm_kwargs: more ``timm.create_model`` arguments (e.g. a tiny Swin's ``embed_dim``).
    """

    def __init__(self, name: str, out_indices, weights=None, *, freeze_bn: bool = False, trainable: int | None = None,
                 normalize: bool = False, window_pad: bool = True, **timm_kwargs):
        super().__init__()
        import timm

        name = str(name)
        if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
            raise SmallboxError(f"timm backbone {name!r}: hub names are not loaded; give a local weights file")
        if not timm.is_model(name.split(".")[0]):
            raise SmallboxError(f"timm backbone: unknown timm model {name!r} (see timm.list_models())")
        weights_file = resolve_weights_file(weights, name) if weights else None
        self.body, self.report = _create_any_size(name, weights_file, features_only=True,
                                                  out_indices=tuple(int(i) for i in out_indices), **timm_kwargs)
        self.name, self.weights = name, None if weights_file is None else str(weights_file)
        self.frozen_bn = freeze_batchnorm(self.body) if freeze_bn else 0
        self.frozen_params = freeze_early_levels(self.body, trainable) if trainable is not None else []
        info, cfg = self.body.feature_info, self.body.pretrained_cfg
        self.channels, self.strides = list(info.channels()), list(info.reduction())
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        self.window_multiple = window_multiple(self.body) if window_pad else (1, 1)
        self.pretrained_size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
        self.normalize = bool(normalize and cfg.get("mean") is not None and cfg.get("std") is not None)
        if self.normalize:
            self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(cfg["std"]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> list of ``(B, C_i, ceil(H / s_i), ceil(W / s_i))``."""
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        H, W = x.shape[-2:]
        padded = pad_bottom_right(x, self.window_multiple)
        maps = []
        for f, s in zip(self.body(padded), self.strides):
            f = f.permute(0, 3, 1, 2) if self.nhwc else f
            if padded is not x:
                f = f[..., : math.ceil(H / s), : math.ceil(W / s)]
            maps.append(f.contiguous())
        return maps

    def describe(self) -> str:
        weights = self.report.summary() if self.report else (self.weights or "none")
        text = f"timm {self.name} (timm weights: {weights}): channels {self.channels}, strides {self.strides}"
        if self.window_multiple != (1, 1):
            text += f"; input padded to multiples of {self.window_multiple[0]}x{self.window_multiple[1]} (shifted windows tile every map)"
        if self.frozen_bn:
            text += f"; {self.frozen_bn} BatchNorm frozen"
        if self.frozen_params:
            text += f"; {len(self.frozen_params)} early parameters frozen"
        return text


def _create_any_size(name: str, weights, **kwargs):
    """``timm_weights.create_features`` with ``dynamic_img_size=True`` where the architecture takes
    it (Swin: any size instead of only 224; ViTs: interpolated position embeddings); CNNs take
    any size as they are and refuse the argument. timm's own errors become SmallboxErrors."""
    try:
        try:
            return create_features(name, weights, **{"dynamic_img_size": True, **kwargs})
        except TypeError as e:
            if "dynamic_img_size" not in str(e):
                raise
        return create_features(name, weights, **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as e:
        raise SmallboxError(f"timm backbone {name!r} with arguments {kwargs}: {type(e).__name__}: {e}") from None


def freeze_batchnorm(model: nn.Module) -> int:
    """Turn every BatchNorm inside ``model`` into a frozen one, in place: torchvision's
    ``FrozenBatchNorm2d``, timm's ``FrozenBatchNormAct2d`` for its ``BatchNormAct2d`` (timm's
    ``freeze_batch_norm_2d``, which keeps eps, activation and drop). Returns how many. Call it
    after loading weights: it copies the statistics the modules hold then."""
    from timm.layers import freeze_batch_norm_2d

    n = sum(isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)) for m in model.modules())
    freeze_batch_norm_2d(model)  # replaces the children; returns a new module only for a BN root
    return n


def feature_levels(model: nn.Module) -> list[str]:
    """Module names of ALL feature levels of a timm ``features_only`` model, in order (resnet:
    ``act1, layer1..layer4``; efficientnet: ``blocks.0, .1, .2, .4, .6``; swin: ``layers.0..3``)."""
    info = model.feature_info
    return [d["module"] for d in (getattr(info, "info", None) or list(info))]


def freeze_early_levels(model: nn.Module, trainable: int) -> list[str]:
    """``requires_grad=False`` for everything up to and including feature level
    ``levels - trainable - 1`` (the stem included); returns the frozen parameters' names. With 3,
    a ResNet trains layer2-4 as torchvision's default, an EfficientNet blocks.2-6, a Swin
    layers.1-3; ``trainable >= levels`` freezes nothing."""
    levels = feature_levels(model)
    if trainable < 0:
        raise SmallboxError(f"trainable feature levels must be >= 0, got {trainable}")
    if trainable >= len(levels):
        return []
    last = levels[len(levels) - trainable - 1]
    modules = dict(model.named_modules())
    # FeatureListNet flattens 'layers.0' to 'layers_0'; FeatureGetterNet nests under 'model.'
    tap = next(modules[c] for c in (last, last.replace(".", "_", 1), "model." + last) if c in modules)
    frozen = set()
    for m in model.modules():  # registration order, timm's own assumption for feature taps
        if m is tap:
            frozen |= {id(p) for p in m.parameters()}
            break
        frozen |= {id(p) for p in m.parameters(recurse=False)}
    names = []
    for n, p in model.named_parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
            names.append(n)
    return names
