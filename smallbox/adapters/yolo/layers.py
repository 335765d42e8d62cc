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
:class:`TimmBackbone`. ``TimmBackbone(...).describe_backbone()`` tells the channels and strides to
write into the ``Index`` rows; :func:`smallbox.callbacks.geometry.log_input_geometry` logs what the
network really sees.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ...errors import SmallboxError
from ..timm_features import any_size_kwargs, resolve_weights_file



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
        create_kwargs = {**any_size_kwargs(name), **options, "out_indices": tuple(int(i) for i in out_indices)}
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

    def describe_backbone(self) -> str:
        text = f"timm {self.name} (timm weights: {self.weights or 'none'}): channels {self.channels}, strides {self.strides}"
        if self.weights:
            text += f", pretrained at {self.pretrained_size[0]}x{self.pretrained_size[1]} (any multiple of 32 works)"
        return text
