"""Checkpoints pickle their classes by module path. smallbox 0.1's YOLO checkpoints name
``smallbox.adapters.yolo_model``, ``.timm_backbone``, ``.size_loss`` and ``.register``; those
modules now live under ``smallbox.adapters.yolo`` (and ``size_weighting``). This finder answers
the old names with the new modules, only when something asks for them, so such a ``best.pt``
still loads (plain ``YOLO(best.pt)`` included) without keeping the old files around."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "smallbox.adapters.yolo_model": "smallbox.adapters.yolo.model",
    "smallbox.adapters.timm_backbone": "smallbox.adapters.yolo.layers",
    "smallbox.adapters.size_loss": "smallbox.adapters.yolo.loss",
    "smallbox.adapters.yolo_trainer": "smallbox.adapters.yolo.trainer",
    "smallbox.adapters.register": "smallbox.adapters.yolo.register",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):  # the module is already executed under its new name
        pass


def install() -> None:
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
