"""One model interface for sliced inference: ``predict_fn(image_bgr [H, W, 3] uint8) -> (xyxy_abs
[N, 4], scores [N], labels [N])`` with labels the class indices ``0..K-1``, and ``.batch([images])``
for several same-size tiles in one forward pass, for an Ultralytics YOLO model (``.pt`` /
``.yaml``, or an export Ultralytics' AutoBackend runs: ``.onnx``, ``.torchscript``, an OpenVINO
folder) or a ``smallbox tv`` checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import SmallboxError
from ..fusion.sliced import PredictFn


@dataclass
class ModelPredictFn:
    """A ``predict_fn`` with what the model knows of its classes.

    Attributes:
        fn: ``image_bgr -> (xyxy_abs [N, 4], scores [N], class indices [N])`` for tiles.
        names: class names by index.
        category_ids: the COCO category id of each class index when the model's training data
            recorded them (a converted dataset's manifest, a tv checkpoint), else None.
        full_fn: the same for the whole image, at the model's own input size (sliced inference's
            full-image pass must see what plain ``predict`` sees, not the tiles' size); None: ``fn``.
    """

    fn: PredictFn
    names: list[str]
    category_ids: list[int] | None = None
    full_fn: PredictFn | None = None
    at_size: object = None  # imgsz -> PredictFn, for models whose input size is a setting (YOLO)
    trained_imgsz: int | None = None  # the input size the model was trained at
    train_scale: float | None = None  # input px per original px in training (the checkpoint's metadata)
    trained_tile: int | None = None  # the tile size of a model trained on tiles
    batch_fn: object = None  # [images] -> [predictions]: several same-size tiles in one forward pass
    fixed_size: int | None = None  # an export of one input size: every call runs at it
    max_batch: int | None = None  # the largest batch the model takes (a static export's)

    def batch(self, images: list) -> list:
        """Predictions of several images (each as ``__call__`` gives them), in one forward pass
        where the model can (same-size tiles), else one by one."""
        if self.batch_fn is None or len(images) <= 1:
            return [self.fn(im) for im in images]
        return self.batch_fn(images)
    def __call__(self, image_bgr: np.ndarray):
        return self.fn(image_bgr)

    def full(self, image_bgr: np.ndarray):
        return (self.full_fn or self.fn)(image_bgr)

    def with_tile_size(self, imgsz: int) -> "ModelPredictFn":
        """The same model, tiles predicted at ``imgsz`` (a model without a size setting: itself)."""
        if self.at_size is None or self.fixed_size:
            return self
        fn, batch_fn = self.at_size(imgsz)
        return replace(self, fn=fn, batch_fn=batch_fn, full_fn=self.full_fn or self.fn)


def load_predict_fn(model_path, conf: float = 0.25, imgsz: int = 640, device: str | None = None,
                    iou: float = 0.7, full_imgsz: int | None = None) -> ModelPredictFn:
    """A ``predict_fn`` for a YOLO model (``.pt`` weights or a model ``.yaml``, via Ultralytics)
    or a ``smallbox tv`` checkpoint (``best.pt`` / ``last.pt`` of a tv run). ``imgsz``: the YOLO
    input size of tiles; ``full_imgsz``: of the whole image (default: the size the model was
    trained at, 640 for a YAML)."""
    path = Path(model_path)
    if not path.exists() and path.suffix != ".yaml":
        raise SmallboxError(f"{path}: no such model file (nothing is downloaded)")
    tv = _tv_checkpoint(path) if path.suffix == ".pt" else None
    if tv is not None:
        return _tv_predict_fn(tv, conf, device)
    return _yolo_predict_fn(path, conf, imgsz, device, iou, full_imgsz)


def _yolo_predict_fn(path: Path, conf: float, imgsz: int, device, iou: float, full_imgsz: int | None) -> ModelPredictFn:
    from ultralytics import YOLO

    from ..datasets.manifest import manifest_of_data_file
    from .yolo.metadata import read_metadata
    from .yolo.register import register_layers

    register_layers()  # models built with smallbox's layers (timm backbones) load too
    model = YOLO(str(path), task="detect")
    exported = path.suffix not in (".pt", ".yaml", ".yml")
    meta = read_metadata(path) if exported else read_metadata(model)
    fixed, max_batch = _export_shape(path) if exported else (None, None)

    def run(images, size):
        size = fixed or size
        results = model.predict(images, imgsz=size, conf=conf, iou=iou, device=device, verbose=False)
        return [(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(np.int64))
                for r in results]

    def at(size):
        def predict(image_bgr):
            return run(image_bgr, size)[0]

        def batch(images):
            out = []
            step = max_batch or len(images)
            for start in range(0, len(images), step):
                out += run(list(images[start:start + step]), size)
            return out
        return predict, batch

    trained = (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz") or meta.get("imgsz")
    full_imgsz = fixed or full_imgsz or (trained if isinstance(trained, int) else 640)
    names = [model.names[i] for i in range(len(model.names))]
    manifest = None if exported else manifest_of_data_file((getattr(model, "overrides", None) or {}).get("data"))
    known = manifest.category_ids if manifest and len(manifest.category_ids) == len(names) else None
    if known is None and len(meta.get("classes") or []) == len(names):
        known = [c["category_id"] for c in meta["classes"]]
    tile_fn, batch_fn = at(imgsz)
    return ModelPredictFn(tile_fn, names, known, at(full_imgsz)[0] if full_imgsz != imgsz else None,
                          (lambda size: at(size)), trained if isinstance(trained, int) else None, meta.get("train_scale"),
                          (meta.get("tiles") or {}).get("size"), batch_fn, fixed, max_batch)


def _export_shape(path: Path) -> tuple[int | None, int | None]:
    """``(input size, batch)`` of an export of fixed shape (``(None, None)`` for a dynamic one),
    from the metadata Ultralytics embeds."""
    from ultralytics.nn.backends.base import BaseBackend

    meta = BaseBackend.read_metadata(path) or {}
    args = meta.get("args") or {}
    if isinstance(args, str):
        import ast

        args = ast.literal_eval(args)
    if args.get("dynamic") in (True, "True"):
        return None, None
    imgsz = meta.get("imgsz")
    if isinstance(imgsz, str):
        import ast

        imgsz = ast.literal_eval(imgsz)
    size = max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz
    batch = meta.get("batch")
    return (int(size) if size else None), (int(batch) if batch else 1)


def _tv_checkpoint(path: Path):
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an Ultralytics checkpoint (pickled classes): not a tv one
        return None
    return ckpt if isinstance(ckpt, dict) and "recipe" in ckpt and "model" in ckpt else None


def _tv_predict_fn(ckpt: dict, conf: float, device) -> ModelPredictFn:
    import torch

    from .tv.trainer import model_from_checkpoint

    dev = torch.device(device if device not in (None, "", "auto") else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model_from_checkpoint(ckpt).to(dev).eval()

    @torch.inference_mode()
    def batch(images):
        xs = [torch.from_numpy(np.ascontiguousarray(im[..., ::-1])).permute(2, 0, 1).float().div_(255).to(dev)
              for im in images]  # BGR -> RGB: torchvision's models take RGB
        out = []
        for o in model(xs):
            # torchvision labels are 1..K; RetinaNet's sigmoid head also scores label 0 (background,
            # never a positive target): dropped, as in every tv export. Class index = label - 1.
            keep = (o["scores"] >= conf) & (o["labels"] > 0)
            out.append((o["boxes"][keep].cpu().double().numpy(), o["scores"][keep].cpu().numpy(),
                        o["labels"][keep].cpu().numpy() - 1))
        return out

    def predict(image_bgr):
        return batch([image_bgr])[0]

    classes = ckpt["classes"]
    return ModelPredictFn(predict, [c["name"] for c in classes], [c["category_id"] for c in classes], batch_fn=batch)
