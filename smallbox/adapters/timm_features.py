"""timm ``features_only`` models as detection backbones: the one builder both paths use
(:class:`smallbox.adapters.yolo.layers.TimmBackbone` in a YOLO model YAML, the torchvision path's
``TimmFPNBackbone``), so weights and input sizes follow the same rules everywhere.

Weights come only from a local file: a path, or a relative path also looked up in
``$SMALLBOX_WEIGHTS_DIR`` (as given, and by its file name alone). Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SmallboxError

WEIGHTS_DIR_ENV = "SMALLBOX_WEIGHTS_DIR"
# Swin's default strict_img_size=True rejects every input size but 224; detection needs any.
_ANY_SIZE_KWARGS = {"swin": {"strict_img_size": False}}


def any_size_kwargs(name: str) -> dict:
    """``timm.create_model`` arguments that let the architecture take any input size."""
    arch = name.split(".")[0]
    return next((kw for prefix, kw in _ANY_SIZE_KWARGS.items() if arch.startswith(prefix)), {})


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
