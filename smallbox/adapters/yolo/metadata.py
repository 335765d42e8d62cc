"""What a smallbox-trained YOLO checkpoint carries about itself, as plain data (dicts, strings,
numbers) under the ``smallbox`` key of the model's YAML dict, which Ultralytics pickles with the
model in every checkpoint (``best.pt``, ``last.pt``) and plain Ultralytics ignores::

    model.yaml["smallbox"] = {
      "version": 1,
      "classes": [{"index": 0, "category_id": 1, "name": "open"}, ...],   # the id manifest's classes
      "buckets": [{"name": "coco", "thresholds": [1024.0, 9216.0]}, ...],  # size buckets of the data
      "imgsz": 320,                 # training input size
      "train_long_side": 640,       # median long side of the training images (tiles: the tile)
      "train_scale": 0.5,           # imgsz / train_long_side: the scale the model saw objects at
      "tiles": {"size": 320, ...},  # trained on tiles (smallbox convert --tiles), else absent
      "data": "/abs/data.yaml",     # provenance
      "smallbox": "0.1.0",
    }

One reader (:func:`read_metadata`) for every command that loads a checkpoint: sliced inference
takes its tile scale from ``train_scale`` (never from the size of the image being sliced), and
predictions keep the original category ids where the data.yaml is gone.
"""

from __future__ import annotations

KEY = "smallbox"
VERSION = 1


def build_metadata(data: dict, imgsz: int) -> dict:
    """The metadata of a run on ``data`` (Ultralytics' parsed data.yaml) at ``imgsz``."""
    from ... import __version__
    from ...datasets.manifest import dataset_section, load_manifest
    from ...errors import SmallboxError

    out = {"version": VERSION, "imgsz": int(imgsz), "data": str(data.get("yaml_file", "")), "smallbox": __version__}
    try:
        section = dataset_section(data, data.get("yaml_file", "data.yaml"))
    except SmallboxError:
        section = None
    if section is None:
        return out
    try:
        out["classes"] = [dict(c) for c in load_manifest(data).classes]
    except SmallboxError:
        pass
    out["buckets"] = [b.to_dict() for b in section.buckets]
    if section.train_long_side:
        out["train_long_side"] = int(section.train_long_side)
        out["train_scale"] = round(int(imgsz) / int(section.train_long_side), 6)
    if section.tiles:
        out["tiles"] = dict(section.tiles)
    return out


def read_metadata(model) -> dict:
    """The metadata of a loaded model (an Ultralytics ``YOLO``, a ``DetectionModel``, or a
    checkpoint dict); ``{}`` for a checkpoint that carries none."""
    inner = model
    if isinstance(inner, dict):  # a checkpoint dict
        inner = inner.get("ema") or inner.get("model")
    elif not isinstance(getattr(inner, "yaml", None), dict):  # an Ultralytics YOLO: its DetectionModel
        inner = getattr(inner, "model", None)
    yaml = getattr(inner, "yaml", None)
    meta = yaml.get(KEY) if isinstance(yaml, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}
