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

from torch import nn

from ..timm_features import TimmFeatures


class TimmBackbone(TimmFeatures):
    """A timm model with ``features_only=True`` whose forward returns NCHW maps, built by the shared
    builder :class:`~smallbox.adapters.timm_features.TimmFeatures` (strict local weights, window
    padding for Swin-like models, ImageNet normalisation inside).

    Args (also the order of the YAML row's arguments):
        name (str): timm model name, optionally with a pretrained tag
            (``swin_base_patch4_window7_224.ms_in22k``). Hub names (``hf-hub:...``) are refused:
            weights come only from a local file.
        out_indices (list[int]): which feature stages to return (timm's ``out_indices``; for Swin
            ``[1, 2, 3]`` are strides 8, 16, 32).
        options (dict | None): ``weights``: local pretrained weights file (``.pth``, ``.bin`` or
            ``.safetensors``, in timm's layout or the original release's: timm's checkpoint filter
            converts it), loaded strictly (a file that does not fit is an error naming the keys);
            relative paths are looked up in the current folder, then in ``$SMALLBOX_WEIGHTS_DIR``;
            absent or null: random init; a missing file is an error, never a download.
            ``weights_from``: where a checkpoint's backbone weights first came from (written by
            :func:`smallbox.adapters.yolo.model.forget_weight_files`; a record, never read).
            ``normalize`` (default true): subtract the model's ImageNet mean and divide by its std
            inside the layer (YOLO feeds [0, 1] images; pretrained timm weights expect normalised
            ones). ``window_pad`` (default true): the Swin border-leak fix. Every other key goes to
            ``timm.create_model``, e.g. a tiny Swin for tests:
            ``{embed_dim: 32, depths: [1, 1, 1, 1], num_heads: [1, 2, 4, 8]}``. (The path sits in
            this mapping because Ultralytics' YAML parser tries to evaluate top-level string
            arguments, and ``/abs/path.pth`` is a Python syntax error there.)

    Shapes: ``forward(x)`` takes ``(B, 3, H, W)`` with H, W multiples of the largest stride and
    returns a list of ``(B, C_i, H / s_i, W / s_i)``, one per ``out_indices`` entry.
    """

    def __init__(self, name: str, out_indices=(1, 2, 3), options: dict | None = None):
        options = dict(options or {})
        weights, weights_from = options.pop("weights", None), options.pop("weights_from", None)
        super().__init__(name, out_indices, weights, normalize=bool(options.pop("normalize", True)),
                         window_pad=bool(options.pop("window_pad", True)), **options)
        self.weights_from = weights_from
        # Ultralytics' initialize_weights() later sets every BatchNorm2d to eps=1e-3: remember
        # timm's values so the model can put them back (pretrained statistics assume them).
        self._norm_eps = {n: m.eps for n, m in self.body.named_modules() if isinstance(m, nn.BatchNorm2d)}

    def __setstate__(self, state):
        # A best.pt pickled before window padding and weights_from existed runs as it was trained.
        super().__setstate__({"window_multiple": (1, 1), "report": None, "weights_from": None, "frozen_bn": 0,
                              "frozen_params": [], **state})

    @property
    def pretrained_from(self) -> str | None:
        """The file this backbone's weights come from: loaded now, or recorded in the checkpoint."""
        return self.weights or self.weights_from

    def restore_norm_eps(self) -> None:
        """Undo Ultralytics' BatchNorm eps override on the timm part."""
        modules = dict(self.body.named_modules())
        for name, eps in self._norm_eps.items():
            modules[name].eps = eps

    def describe_backbone(self) -> str:
        text = self.describe()
        if self.weights_from and not self.weights:
            text += f"; backbone pretrained from {self.weights_from} (weights carried by the checkpoint)"
        if self.pretrained_from:
            text += f"; pretrained at {self.pretrained_size[0]}x{self.pretrained_size[1]} (any multiple of 32 works)"
        return text


def pretrained_backbone_files(model: nn.Module) -> list[str]:
    """The files the model's timm backbones were pretrained from (loaded at build, or recorded in
    the checkpoint as ``weights_from``); empty for random init. ``smallbox.json`` / a ledger can
    say "backbone from FILE" or "random init" from it."""
    return [m.pretrained_from for m in model.modules() if isinstance(m, TimmBackbone) and m.pretrained_from]
