"""Make smallbox's modules usable by name from Ultralytics model YAMLs."""

from __future__ import annotations


def register_modules() -> None:
    """Set smallbox's custom layers as attributes of ``ultralytics.nn.tasks`` (where
    ``parse_model`` looks names up). Idempotent."""
    import ultralytics.nn.tasks as tasks

    from .timm_backbone import TimmBackbone

    for layer in (TimmBackbone,):
        setattr(tasks, layer.__name__, layer)
