"""Exports that would be wrong are refused before they are written.

A model with a timm Swin backbone traced with ``dynamic=True`` keeps the export size's window
padding and attention masks: timm computes them from the input size with Python integers, which
the trace freezes. Exported at 128 and run at 256x224 it returns the 128x128 anchor count (only
the top-left of the image is searched); at 96x160 ONNX Runtime stops on a Concat node. A static
export (one fixed input size) is correct and stays allowed: export once per size you need.

Formats smallbox checks against PyTorch (tests/test_export_models.py): ONNX (static and dynamic)
and TorchScript (static) of Ultralytics' own architectures (CSP, P2), and static ONNX of a Swin
backbone. Other formats are exported by Ultralytics as it does, unchecked by smallbox: the log
says so.
"""

from __future__ import annotations

from ultralytics.utils import LOGGER

from ...errors import SmallboxError

CHECKED_FORMATS = ("onnx", "torchscript")


def refuse_wrong_export(exporter) -> None:
    from ..swin_window import swin_plan
    from .layers import TimmBackbone

    model, args = exporter.model, exporter.args
    swin = [m for m in model.modules() if isinstance(m, TimmBackbone) and swin_plan(m) is not None]
    if swin and getattr(args, "dynamic", False):
        raise SmallboxError(
            f"dynamic=True with a Swin backbone ({swin[0].name}): timm computes the shifted windows' padding and "
            "attention masks from the input size in Python, so the trace would keep the export size's and search "
            "only part of a larger image. Export at a fixed size (dynamic=False imgsz=N), once per size you need")
    fmt = str(getattr(args, "format", "")).lower()
    if fmt and fmt not in CHECKED_FORMATS:
        LOGGER.warning(f"smallbox: format={fmt} is exported by Ultralytics unchecked: smallbox compares ONNX and "
                       "TorchScript exports with PyTorch (docs/yolo.md#export); check this one's boxes yourself")
