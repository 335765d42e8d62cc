"""Any timm ``features_only`` model as the backbone of an Ultralytics YOLO model YAML.

In a model YAML the backbone is one layer that returns a list of feature maps, followed by
Ultralytics' ``Index`` layers that pick one map each and state its channels (``parse_model``
cannot know the channels of a layer it does not know)::

    backbone:
      - [-1, 1, TimmBackbone, [swin_tiny_patch4_window7_224, [1, 2, 3], {weights: swin_t.safetensors}]]
      - [0, 1, Index, [192, 0]]  # 1: P3/8
      - [0, 1, Index, [384, 1]]  # 2: P4/16
      - [0, 1, Index, [768, 2]]  # 3: P5/32

YAML rows take positional arguments only: ``[name, out_indices, options]`` — see
:class:`TimmBackbone`. ``describe_backbones(model)`` tells the channels and strides to write into
the ``Index`` rows; ``log_input_geometry(trainer)`` logs what the network really sees.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..datasets.errors import SmallboxError

# Swin's default strict_img_size=True rejects every input size but 224; detection needs any.
_ANY_SIZE_KWARGS = {"swin": {"strict_img_size": False}}


class TimmBackbone(nn.Module):
    """A timm model with ``features_only=True`` whose forward returns NCHW maps.

    Args (also the order of the YAML row's arguments):
        name (str): timm model name, optionally with a pretrained tag
            (``swin_base_patch4_window7_224.ms_in22k``). Hub names (``hf-hub:...``) are refused:
            weights come only from a local file.
        out_indices (list[int]): which feature stages to return (timm's ``out_indices``; for Swin
            ``[1, 2, 3]`` are strides 8, 16, 32).
        options (dict | None): ``weights``: local pretrained weights file (``.pth``, ``.bin`` or
            ``.safetensors``, in timm's layout or the original release's: timm's checkpoint filter
            converts it); relative paths are looked up in the current folder, then in
            ``$SMALLBOX_WEIGHTS_DIR``; absent or null: random init; a missing file is an error,
            never a download. ``normalize`` (default true): subtract the model's ImageNet mean and
            divide by its std inside the layer (YOLO feeds [0, 1] images; pretrained timm weights
            expect normalised ones). Every other key goes to ``timm.create_model``, e.g. a tiny
            Swin for tests: ``{embed_dim: 32, depths: [1, 1, 1, 1], num_heads: [1, 2, 4, 8]}``.
            (The path sits in this mapping because Ultralytics' YAML parser tries to evaluate
            top-level string arguments, and ``/abs/path.pth`` is a Python syntax error there.)

    Shapes: ``forward(x)`` takes ``(B, 3, H, W)`` with H, W multiples of the largest stride and
    returns a list of ``(B, C_i, H / s_i, W / s_i)``, one per ``out_indices`` entry.
    """

    def __init__(self, name: str, out_indices=(1, 2, 3), options: dict | None = None):
        super().__init__()
        import timm

        name = str(name)
        if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
            raise SmallboxError(f"TimmBackbone {name!r}: hub names are not loaded; give a local file as options.weights")
        options = dict(options or {})
        weights, normalize = options.pop("weights", None), bool(options.pop("normalize", True))
        create_kwargs = {**_any_size_kwargs(name), **options, "out_indices": tuple(int(i) for i in out_indices)}
        weights_file = resolve_weights_file(weights, name) if weights else None
        if weights_file is not None:
            # timm tries, in order, a state_dict, a file, then the hub: the file overlay wins.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            create_kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights_file)})
        if not timm.is_model(name.split(".")[0]):
            raise SmallboxError(f"TimmBackbone: unknown timm model {name!r} (see timm.list_models())")
        try:
            self.body = timm.create_model(name, features_only=True, **create_kwargs)
        except RuntimeError as e:  # state_dict key/shape mismatch
            if weights_file is None:
                raise SmallboxError(f"TimmBackbone {name!r} with arguments {create_kwargs}: {e}") from None
            raise SmallboxError(f"TimmBackbone {name!r}: weights {weights_file} do not fit this model: {str(e)[:400]}") from None
        except (TypeError, ValueError) as e:
            raise SmallboxError(f"TimmBackbone {name!r} with arguments {create_kwargs}: {e}") from None
        self.name, self.weights = name, None if weights_file is None else str(weights_file)
        info = self.body.feature_info
        self.channels, self.strides = list(info.channels()), list(info.reduction())
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        self.pretrained_size = tuple(self.body.pretrained_cfg.get("input_size", (3, 224, 224))[1:])
        mean, std = self.body.pretrained_cfg.get("mean"), self.body.pretrained_cfg.get("std")
        self.normalize = bool(normalize and mean is not None and std is not None)
        if self.normalize:
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        # Ultralytics' initialize_weights() later sets every BatchNorm2d to eps=1e-3: remember
        # timm's values so the model can put them back (pretrained statistics assume them).
        self._norm_eps = {n: m.eps for n, m in self.body.named_modules() if isinstance(m, nn.BatchNorm2d)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> list of ``(B, C_i, H / s_i, W / s_i)``."""
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        features = self.body(x)
        if self.nhwc:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        return list(features)

    def restore_norm_eps(self) -> None:
        """Undo Ultralytics' BatchNorm eps override on the timm part."""
        modules = dict(self.body.named_modules())
        for name, eps in self._norm_eps.items():
            modules[name].eps = eps

    def describe(self) -> str:
        text = f"timm {self.name} (timm weights: {self.weights or 'none'}): channels {self.channels}, strides {self.strides}"
        if self.weights:
            text += f", pretrained at {self.pretrained_size[0]}x{self.pretrained_size[1]} (any multiple of 32 works)"
        return text


def _any_size_kwargs(name: str) -> dict:
    arch = name.split(".")[0]
    return next((kw for prefix, kw in _ANY_SIZE_KWARGS.items() if arch.startswith(prefix)), {})


def resolve_weights_file(weights, name: str = "") -> Path:
    """The local weights file for ``weights`` (a path; a relative one is tried in the current
    folder, then under ``$SMALLBOX_WEIGHTS_DIR`` as given and by its file name alone). Raises
    SmallboxError when none exists."""
    path = Path(os.path.expanduser(str(weights)))
    candidates = [path]
    if not path.is_absolute() and os.environ.get("SMALLBOX_WEIGHTS_DIR"):
        folder = Path(os.path.expanduser(os.environ["SMALLBOX_WEIGHTS_DIR"]))
        candidates += [folder / path, folder / path.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise SmallboxError(
        f"TimmBackbone {name}: pretrained weights file not found (looked at {looked}). Put the file there "
        f"(e.g. model.safetensors of the timm/{name.split('.')[0]} model card, or the original release .pth), "
        "set SMALLBOX_WEIGHTS_DIR, or set weights to null (or drop it) for random init. Nothing is downloaded."
    )


def backbones(model: nn.Module) -> list[nn.Module]:
    """The TimmBackbone and Ultralytics TorchVision layers of ``model``."""
    from ultralytics.nn.modules.block import TorchVision

    return [m for m in model.modules() if isinstance(m, (TimmBackbone, TorchVision))]


def describe_backbones(model: nn.Module) -> list[str]:
    """One line per backbone layer: name, weights, channels, strides."""
    lines = []
    for m in backbones(model):
        if isinstance(m, TimmBackbone):
            lines.append(m.describe())
        else:
            lines.append(f"torchvision {type(m.m).__name__} (Ultralytics TorchVision layer)")
    return lines


def input_geometry(imgsz: int, head_strides, original_shapes=None) -> tuple[str, float | None]:
    """What the network sees: input size, feature-map sizes per head stride, and how much the
    original images are shrunk to get there (at scale 1/4.6 a 32² box is 7² at the input).

    Args:
        imgsz (int): training input side (long side after letterbox).
        head_strides (list[int]): strides of the Detect layer's inputs, e.g. [8, 16, 32].
        original_shapes (array (N, 2) | None): original (h, w) of the training images.

    Returns:
        (text, cells): the description, and how many cells of the finest feature map a 32-px
        original box spans (None without original shapes).
    """
    import numpy as np

    maps = ", ".join(f"{imgsz // int(s)}x{imgsz // int(s)} (stride {int(s)})" for s in head_strides)
    text = f"network input {imgsz}x{imgsz} -> feature maps {maps}"
    if original_shapes is None or not len(original_shapes):
        return text, None
    long_side = float(np.median(np.max(np.asarray(original_shapes), axis=1)))
    scale = imgsz / long_side
    cells = 32 * scale / int(min(head_strides))
    text += (
        f"; images: median long side {long_side:g} px, resized x{scale:.3g} "
        f"(a 32x32 box becomes {32 * scale:.3g}x{32 * scale:.3g} px, {cells:.2g}x the finest stride of {int(min(head_strides))} px)"
    )
    return text, cells


def log_input_geometry(trainer) -> None:
    """Ultralytics callback (``on_train_start``): log the effective input size, the backbone's
    feature strides and the image downscale, so that a run that resizes 1024-px images to 224 says
    so in its first lines. ``register_modules()`` adds it to Ultralytics' default callbacks; it
    logs once per trainer however often it is registered."""
    from ultralytics.utils import LOGGER, RANK

    if RANK not in {-1, 0} or getattr(trainer, "_smallbox_geometry_logged", False):
        return
    trainer._smallbox_geometry_logged = True
    from ultralytics.utils.torch_utils import unwrap_model

    model = unwrap_model(trainer.model)
    shapes = None
    dataset = getattr(getattr(trainer, "train_loader", None), "dataset", None)
    if dataset is not None and getattr(dataset, "labels", None):
        shapes = [lb["shape"] for lb in dataset.labels if "shape" in lb]
    imgsz = trainer.args.imgsz if isinstance(trainer.args.imgsz, int) else max(trainer.args.imgsz)
    for line in describe_backbones(model):
        LOGGER.info(f"smallbox backbone: {line}")
    text, cells = input_geometry(int(imgsz), model.stride.tolist(), shapes)
    LOGGER.info(f"smallbox input: {text}")
    if cells is not None and cells < 1:
        LOGGER.warning(f"smallbox input: a 32x32 box covers less than one cell of the finest feature map at imgsz={imgsz}; "
                       "small objects will be hard to detect (raise imgsz?)")
