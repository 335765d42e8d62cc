"""The torchvision parity path: Faster R-CNN and RetinaNet (ResNet-FPN or any timm backbone + FPN),
trained from a recipe on COCO json, evaluated with :func:`smallbox.evaluate.evaluate`, exporting the
same COCO results json and competition CSV as the YOLO path.

Entry points: :func:`trainer.train` (``smallbox tv train``), :func:`models.build_model`,
:func:`losses.enable_size_weights`, :func:`trainer.model_from_checkpoint`, :func:`engine.predict`.
"""
