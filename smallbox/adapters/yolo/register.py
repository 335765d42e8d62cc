"""Make smallbox's parts known to Ultralytics. Nothing of Ultralytics changes on import: the
``smallbox yolo`` command (and anyone using smallbox's classes from Python) calls
:func:`register` once."""

from __future__ import annotations


def register_layers() -> None:
    """Set smallbox's model-YAML layers as attributes of ``ultralytics.nn.tasks``, where
    ``parse_model`` looks names up. Idempotent; :class:`~.model.SmallboxDetectionModel` calls it
    before parsing, so a YAML naming them parses in any process (DDP workers, resumes)."""
    import ultralytics.nn.tasks as tasks

    from .layers import TimmBackbone

    for layer in (TimmBackbone,):
        setattr(tasks, layer.__name__, layer)


def register() -> None:
    """Point Ultralytics' detect task at smallbox's trainer, validator, predictor and model, and
    make smallbox's layers parseable (idempotent).

    ``YOLO.task_map`` reads ``ultralytics.models.yolo.detect.Detection{Trainer,Validator,Predictor}``
    and ``ultralytics.models.yolo.model.DetectionModel`` when it is called, so afterwards every
    ``YOLO(...).train/val/predict`` of a detection model, and the ``yolo`` CLI, uses ours.
    """
    import ultralytics.models.yolo.detect as detect
    import ultralytics.models.yolo.model as yolo_model

    from .model import SmallboxDetectionModel
    from .predictor import SmallboxPredictor
    from .trainer import SmallboxTrainer
    from .metadata import into_export
    from .validator import SmallboxValidator

    register_layers()
    _add_default_callback("on_export_start", into_export)
    detect.DetectionTrainer = SmallboxTrainer
    detect.DetectionValidator = SmallboxValidator
    detect.DetectionPredictor = SmallboxPredictor
    yolo_model.DetectionModel = SmallboxDetectionModel


def _add_default_callback(event: str, fn) -> None:
    """Every Ultralytics model made afterwards copies the default callbacks: add ``fn`` once."""
    from ultralytics.utils.callbacks.base import default_callbacks

    if fn not in default_callbacks[event]:
        default_callbacks[event].append(fn)
