"""One model interface for sliced inference: ``predict_fn(image_bgr [H, W, 3] uint8) -> (xyxy_abs
[N, 4], scores [N], labels [N])`` with labels the class indices ``0..K-1``, for an Ultralytics YOLO
model (``.pt`` / ``.yaml``) or a ``smallbox tv`` checkpoint."""

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
    def __call__(self, image_bgr: np.ndarray):
        return self.fn(image_bgr)

    def full(self, image_bgr: np.ndarray):
        return (self.full_fn or self.fn)(image_bgr)

    def with_tile_size(self, imgsz: int) -> "ModelPredictFn":
        """The same model, tiles predicted at ``imgsz`` (a model without a size setting: itself)."""
        if self.at_size is None:
            return self
        return replace(self, fn=self.at_size(imgsz), full_fn=self.full_fn or self.fn)


def load_predict_fn(model_path, conf: float = 0.25, imgsz: int = 640, device: str | None = None,
                    iou: float = 0.7, full_imgsz: int | None = None) -> ModelPredictFn:
    """A ``predict_fn`` for a YOLO model (``.pt`` weights or a model ``.yaml``, via Ultralytics)
    or a ``smallbox tv`` checkpoint (``best.pt`` / ``last.pt`` of a tv run). ``imgsz``: the YOLO
    input size of tiles; ``full_imgsz``: of the whole image (default: the size the model was
    trained at, 640 for a YAML)."""
    path = Path(model_path)
    if path.suffix == ".pt" and not path.is_file():
        raise SmallboxError(f"{path}: no such model file (nothing is downloaded)")
    tv = _tv_checkpoint(path) if path.suffix == ".pt" else None
    if tv is not None:
        return _tv_predict_fn(tv, conf, device)
    return _yolo_predict_fn(path, conf, imgsz, device, iou, full_imgsz)


def _yolo_predict_fn(path: Path, conf: float, imgsz: int, device, iou: float, full_imgsz: int | None) -> ModelPredictFn:
    from ultralytics import YOLO

    from ..datasets.manifest import manifest_of_data_file
    from .yolo.register import register_layers

    register_layers()  # models built with smallbox's layers (timm backbones) load too
    model = YOLO(str(path), task="detect")

    def at(size):
        def predict(image_bgr):
            r = model.predict(image_bgr, imgsz=size, conf=conf, iou=iou, device=device, verbose=False)[0]
            return r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(np.int64)
        return predict

    from .yolo.metadata import read_metadata

    trained = (getattr(model, "ckpt", None) or {}).get("train_args", {}).get("imgsz")
    full_imgsz = full_imgsz or (trained if isinstance(trained, int) else 640)
    names = [model.names[i] for i in range(len(model.names))]
    meta = read_metadata(model)
    manifest = manifest_of_data_file((getattr(model, "overrides", None) or {}).get("data"))
    known = manifest.category_ids if manifest and len(manifest.category_ids) == len(names) else None
    if known is None and len(meta.get("classes") or []) == len(names):
        known = [c["category_id"] for c in meta["classes"]]
    return ModelPredictFn(at(imgsz), names, known, at(full_imgsz) if full_imgsz != imgsz else None, at, full_imgsz,
                          meta.get("train_scale"), (meta.get("tiles") or {}).get("size"))
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
    def predict(image_bgr):
        x = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1).float().div_(255)
        out = model([x.to(dev)])[0]
        # torchvision labels are 1..K; RetinaNet's sigmoid head also scores label 0 (background,
        # never a positive target): dropped, as in every tv export. Class index = label - 1.
        keep = (out["scores"] >= conf) & (out["labels"] > 0)
        return (out["boxes"][keep].cpu().double().numpy(), out["scores"][keep].cpu().numpy(),
                out["labels"][keep].cpu().numpy() - 1)

    classes = ckpt["classes"]
    return ModelPredictFn(predict, [c["name"] for c in classes], [c["category_id"] for c in classes])
