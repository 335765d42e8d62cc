"""What plugs into Ultralytics or torchvision: ``yolo/`` (model, layers, size-weighted loss,
trainer, validator, predictor; :func:`smallbox.adapters.yolo.register.register` points Ultralytics
at them) and ``tv/`` (Faster R-CNN / RetinaNet, losses, data, training loop), sharing one timm
feature-extractor builder (``timm_features``) and one size-weighting rule (``size_weighting``).
Importing this package changes nothing in Ultralytics."""

from ._legacy import install as _install_moved_module_names

_install_moved_module_names()  # only answers old module paths that old checkpoints pickle
