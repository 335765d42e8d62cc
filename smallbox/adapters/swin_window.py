"""Shifted windows of timm Swin (v1/v2) ``features_only`` models: which input size makes every
shifted stage tile exactly, and how far information may legitimately travel.

Why it matters (timm 1.0.31, ``timm/models/swin_transformer.py``, ``SwinTransformerBlock._attn``;
timm issue #2438): with ``strict_img_size=False`` a block ROLLS its map by ``-shift`` first and
PADS it to a multiple of the window afterwards. The shift mask labels the row bands
``[0, Hp-ws) [Hp-ws, Hp-s) [Hp-s, Hp)`` of the PADDED height ``Hp``, but the rows the roll wrapped
around (the image's top rows) sit at ``[H-s, H)``: whenever ``H % ws != 0`` top-border tokens
attend to bottom-border tokens (and left to right). At 640 that is every shifted stage of Swin-T.

The fix (:class:`smallbox.adapters.timm_features.TimmFeatures`) pads the INPUT at the bottom/right
to :func:`window_multiple`, so no block ever pads and timm's mask is the textbook one, then crops
each map back. :func:`reach_bound` states what a correctly masked Swin may change; the tests check
that everything beyond it is bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StagePlan:
    """One Swin stage: does it start with a 2x2 patch merge, its stride (input pixels per token,
    rows/cols), and its blocks' ``(window_h, window_w, shift_h, shift_w)``."""

    merge: bool
    stride: tuple[int, int]
    blocks: list[tuple[int, int, int, int]] = field(default_factory=list)

    def shifted(self, axis: int) -> bool:
        return any(b[2 + axis] for b in self.blocks)


def swin_plan(model: nn.Module) -> tuple[tuple[int, int], list[StagePlan]] | None:
    """``(patch_size, stages)`` of a timm Swin-like model (plain or ``features_only``), in forward
    order; None for a model without window blocks (a CNN, a ViT)."""
    patch, stages = None, []
    for m in model.modules():  # registration order is forward order in timm's Swin
        if patch is None and hasattr(m, "patch_size") and hasattr(m, "proj"):
            p = m.patch_size
            patch = (int(p[0]), int(p[1])) if isinstance(p, (tuple, list)) else (int(p), int(p))
        if patch is not None and hasattr(m, "blocks") and hasattr(m, "downsample"):
            merge = not isinstance(m.downsample, nn.Identity)
            prev = stages[-1].stride if stages else patch
            blocks = [(int(b.window_size[0]), int(b.window_size[1]), int(b.shift_size[0]), int(b.shift_size[1]))
                      for b in m.blocks if hasattr(b, "window_size") and hasattr(b, "shift_size")]
            stages.append(StagePlan(merge, (prev[0] * 2, prev[1] * 2) if merge else prev, blocks))
    if patch is None or not any(s.blocks for s in stages):
        return None
    return patch, stages


def window_multiple(model: nn.Module) -> tuple[int, int]:
    """The ``(rows, cols)`` an input size must be a multiple of for the windows of every stage
    with a shifted block to tile its map: ``lcm(stride_i * window_i)``; ``(1, 1)`` without
    windows. 112 for ``swin_*_window7_224`` (stages 1-3 shift; stage 4 never does: timm fixes its
    shift to 0 at construction, its 7x7 map at 224 being one window)."""
    plan = swin_plan(model)
    unit = [1, 1]
    for stage in (plan[1] if plan else []):
        for axis in (0, 1):
            if stage.shifted(axis):
                for b in stage.blocks:
                    unit[axis] = math.lcm(unit[axis], stage.stride[axis] * b[axis])
    return unit[0], unit[1]


def pad_bottom_right(x: torch.Tensor, multiple: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` padded with 0 at the bottom/right to multiples of ``multiple``. After
    ImageNet normalisation 0 is the mean colour (Ultralytics letterboxes with 114/255 grey,
    torchvision's transform pads its normalised batch with 0 too)."""
    ph, pw = (-x.shape[-2]) % multiple[0], (-x.shape[-1]) % multiple[1]
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def reach_bound(model: nn.Module, perturbed: int, axis: int = 0) -> dict[int, int]:
    """For a change of input rows (``axis=0``) or columns (1) ``[0, perturbed)``: per stage
    stride, the largest token index a CORRECTLY masked Swin with this model's windows can change
    (plain windows at ``[k ws, (k+1) ws)``; shifted ones at ``[s + k ws, s + (k+1) ws)`` with the
    wrapped band ``[0, s)`` kept apart). Any change beyond it is a leak.

    Patch embedding: ``m = (p - 1) // patch``; a window block takes ``m`` to the last index of
    its window; MLP and norms are per token; a patch merge maps ``m -> m // 2``."""
    plan = swin_plan(model)
    if plan is None:
        raise ValueError("not a Swin-like model")
    patch, stages = plan
    m, out = (perturbed - 1) // patch[axis], {}
    for stage in stages:
        m = m // 2 if stage.merge else m
        for b in stage.blocks:
            ws, s = b[axis], b[2 + axis]
            if s == 0:
                m = (m // ws + 1) * ws - 1
            elif m < s:
                m = s - 1
            else:
                m = s + ((m - s) // ws + 1) * ws - 1
        out[stage.stride[axis]] = m
    return out
