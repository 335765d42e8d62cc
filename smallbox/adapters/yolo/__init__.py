"""The Ultralytics YOLO path: ``register()`` (in ``register``) makes ``yolo`` use smallbox's
trainer, validator, predictor, model and layers."""
