"""Make smallbox's parts known to Ultralytics: model-YAML layers and the start-of-training log."""

from __future__ import annotations


def register_modules() -> None:
    """Set smallbox's custom layers as attributes of ``ultralytics.nn.tasks`` (where
    ``parse_model`` looks names up), and add :func:`~smallbox.adapters.timm_backbone.log_input_geometry`
    to Ultralytics' default ``on_train_start`` callbacks, which every trainer created afterwards in
    this process copies (the CLI cannot name a callback). Idempotent."""
    import ultralytics.nn.tasks as tasks
    from ultralytics.utils.callbacks import base

    from .timm_backbone import TimmBackbone, log_input_geometry

    for layer in (TimmBackbone,):
        setattr(tasks, layer.__name__, layer)
    on_train_start = base.default_callbacks.setdefault("on_train_start", [])
    if log_input_geometry not in on_train_start:
        on_train_start.append(log_input_geometry)
