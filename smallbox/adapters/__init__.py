"""What plugs into Ultralytics or torchvision: backbones, losses, models.

Importing this package makes smallbox's layers known to Ultralytics' model-YAML parser, so that a
checkpoint that uses them (unpickling imports their modules, hence this package) can also be
re-built from its YAML in a fresh process (fine-tuning, resuming, DDP workers)."""

from .register import register_modules

register_modules()
