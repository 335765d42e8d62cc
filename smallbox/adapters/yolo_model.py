"""smallbox's Ultralytics detection model: a ``DetectionModel`` whose criterion can weight the
box loss by ground-truth size (configured in the model YAML). Until that lands it is the stock
model."""

from __future__ import annotations

from ultralytics.nn.tasks import DetectionModel


class SmallboxDetectionModel(DetectionModel):
    """``DetectionModel`` built from a YAML path or dict; same constructor arguments."""
