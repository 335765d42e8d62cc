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
    """The metadata of a loaded model (an Ultralytics ``YOLO``, a ``DetectionModel``, a
    checkpoint dict, Ultralytics' ``AutoBackend`` of an export) or of an exported model file
    (``.onnx``, ``.torchscript``, an OpenVINO folder: from the metadata Ultralytics embeds, where
    :func:`into_export` put it); ``{}`` for a model that carries none."""
    import json
    from pathlib import Path

    if isinstance(model, (str, Path)) or isinstance(getattr(model, "model", None), (str, Path)):
        path = Path(model if isinstance(model, (str, Path)) else model.model)
        if path.suffix == ".pt":
            from ultralytics.nn.tasks import load_checkpoint

            return read_metadata(load_checkpoint(path)[0])
        from ultralytics.nn.backends.base import BaseBackend

        value = (BaseBackend.read_metadata(path) or {}).get(KEY)
        return json.loads(value) if isinstance(value, str) else dict(value or {})
    exported = getattr(model, "metadata", None)
    if isinstance(exported, dict) and KEY in exported:  # an AutoBackend of an export
        value = exported[KEY]
        return json.loads(value) if isinstance(value, str) else dict(value)
    backend = getattr(model, "model", None)
    if backend is not None and backend.__class__.__name__ == "AutoBackend":
        return read_metadata(backend)
    inner = model
    if isinstance(inner, dict):  # a checkpoint dict
        inner = inner.get("ema") or inner.get("model")
    elif not isinstance(getattr(inner, "yaml", None), dict):  # an Ultralytics YOLO: its DetectionModel
        inner = getattr(inner, "model", None)
    yaml = getattr(inner, "yaml", None)
    meta = yaml.get(KEY) if isinstance(yaml, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def into_export(exporter) -> None:
    """Ultralytics' ``on_export_start`` callback: smallbox's metadata joins the export's own
    (a JSON string under ``smallbox``), so an exported model keeps its original category ids, size
    ranges and training scale. A model whose export cannot be right stops here, with the reason."""
    import json

    from .export_checks import refuse_wrong_export

    refuse_wrong_export(exporter)
    meta = read_metadata(exporter.model)
    if meta:
        exporter.metadata[KEY] = json.dumps(meta, sort_keys=True)
