"""The val split as ``smallbox yolo predict`` sees it, so that every number the validator reports
is the number the deployed model gets (issue: "one number per model").

Ultralytics' validator reads each image resized to ``imgsz`` (``load_image``) and pads whole
batches to a rect shape with ``pad=0.5``: a 640x640 image is seen on a 672x672 canvas, with a
16 px grey border, which alone cost DeepPCB models about 0.025-0.05 AP_small against
``predict``. Here each image is read unresized and letterboxed once, exactly as
``DetectionPredictor.pre_transform`` does (``LetterBox(imgsz, auto=rect, stride)``), and only
images whose letterboxed shapes are equal share a batch (:class:`ShapeBatchSampler`), so no image
is padded beyond its own letterbox and batching still works on same-shape data.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from ultralytics.data.augment import LetterBox
from ultralytics.data.build import seed_worker
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import get_split_fraction
from ultralytics.utils import LOGGER, colorstr
from ultralytics.utils.patches import imread

PAD_VALUE = 114  # LetterBox's


def letterbox_shape(hw, imgsz, auto: bool, stride: int) -> tuple[int, int]:
    """The ``(h, w)`` that ``LetterBox(imgsz, auto, stride, scaleup=True, center=True)`` gives an
    image of shape ``hw`` (``LetterBox.get_params`` in ultralytics/data/augment.py)."""
    new = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    h, w = int(hw[0]), int(hw[1])
    r = min(new[0] / h, new[1] / w)
    uw, uh = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = new[1] - uw, new[0] - uh
    if auto:
        dw, dh = dw % stride, dh % stride
    return uh + dh, uw + dw


class PredictLetterboxDataset(YOLODataset):
    """A val/test split read as ``predict`` reads it: the image as decoded (no ``load_image``
    resize), then one LetterBox on the original. Labels go through the same LetterBox (for
    Ultralytics' own metrics and the val loss). Each sample carries ``lb_shape``, its own
    letterboxed ``(h, w)``, for rescaling boxes as ``predict`` does."""

    def __init__(self, *args, auto: bool = True, **kwargs):
        self.lb_auto = auto
        kwargs.update(rect=False, augment=False)
        if kwargs.get("cache") == "disk":  # Ultralytics' .npy cache holds resized images
            kwargs["cache"] = None
        super().__init__(*args, **kwargs)
        self.lb_shapes = [letterbox_shape(lb["shape"], self.imgsz, self.lb_auto, self.stride) for lb in self.labels]

    def build_transforms(self, hyp):
        transforms = super().build_transforms(hyp)  # [LetterBox(imgsz, scaleup=False), Format(...)]
        if not isinstance(transforms.transforms[0], LetterBox):
            raise RuntimeError("smallbox: Ultralytics' val transforms no longer start with LetterBox; update val_data.py")
        transforms.transforms[0] = LetterBox(self.imgsz, auto=self.lb_auto, stride=self.stride)
        return transforms

    def load_image(self, i, rect_mode=True, resize_short=False):
        """The image as ``LoadImagesAndVideos`` reads it: ``imread(file, flags)``, not resized."""
        im = self.ims[i]
        if im is None:
            im = imread(self.im_files[i], flags=self.cv2_flag)
            if im is None:
                raise FileNotFoundError(f"Image Not Found {self.im_files[i]}")
            if im.ndim == 2:
                im = im[..., None]
        hw = im.shape[:2]
        return im, hw, hw

    def __getitem__(self, index):
        label = self.transforms(self.get_image_and_label(index))
        label["lb_shape"] = tuple(label["img"].shape[1:])
        return label

    @staticmethod
    def collate_fn(batch):
        """``YOLODataset.collate_fn``. Images of unequal shape only meet when the label cache's
        shape was not the decoded one (e.g. an EXIF turn): they are padded at the bottom / right,
        never shifted (boxes are rescaled with ``lb_shape``), with a warning."""
        shapes = {tuple(b["img"].shape) for b in batch}
        if len(shapes) > 1:
            LOGGER.warning(f"smallbox: val batch with unequal letterboxed shapes {sorted(shapes)}: padded bottom/right; "
                           "predictions of these images may differ slightly from predict's")
            height, width = max(s[1] for s in shapes), max(s[2] for s in shapes)
            for b in batch:
                c, h, w = b["img"].shape
                if (h, w) != (height, width):
                    img = torch.full((c, height, width), PAD_VALUE, dtype=b["img"].dtype)
                    img[:, :h, :w] = b["img"]
                    b["bboxes"] = b["bboxes"] * torch.tensor([w / width, h / height, w / width, h / height])
                    b["img"] = img
        return YOLODataset.collate_fn(batch)


class ShapeBatchSampler(Sampler):
    """Batches of at most ``batch_size`` indices whose letterboxed shapes are equal; dataset order
    within a shape, shapes in order of first appearance. Under DDP each rank first takes a
    contiguous share of the indices (as Ultralytics' ContiguousDistributedSampler), then groups it."""

    def __init__(self, shapes, batch_size: int, rank: int = -1):
        idx = list(range(len(shapes)))
        if rank >= 0 and dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            per, extra = divmod(len(idx), world)
            start = rank * per + min(rank, extra)
            idx = idx[start:start + per + (rank < extra)]
        groups: OrderedDict = OrderedDict()
        for i in idx:
            groups.setdefault(tuple(shapes[i]), []).append(i)
        self.batch_size = max(int(batch_size), 1)
        self.batches = [g[k:k + self.batch_size] for g in groups.values() for k in range(0, len(g), self.batch_size)]

    def __iter__(self):
        return iter([list(b) for b in self.batches])

    def __len__(self):
        return len(self.batches)

    def order(self) -> list[int]:
        return [i for b in self.batches for i in b]


def build_predict_val_loader(cfg, img_path, batch: int, data: dict, stride: int, workers: int, rank: int = -1,
                             auto: bool = True, pin_memory: bool = False, split: str = "val") -> DataLoader:
    """The val/test loader of smallbox's validator, standalone and inside training."""
    dataset = PredictLetterboxDataset(
        img_path=img_path, imgsz=cfg.imgsz, batch_size=batch, hyp=cfg, cache=cfg.cache or None,
        single_cls=cfg.single_cls or False, stride=int(stride), pad=0.0, prefix=colorstr(f"{split}: "),
        task=cfg.task, classes=cfg.classes, data=data, fraction=get_split_fraction(cfg.fraction, split), auto=auto)
    sampler = ShapeBatchSampler(dataset.lb_shapes, batch, rank=rank)
    n_shapes = len(set(map(tuple, dataset.lb_shapes)))
    if n_shapes > 1:
        LOGGER.info(f"smallbox: {len(dataset)} val images in {n_shapes} letterboxed shapes -> {len(sampler)} batches "
                    "(no batch mixes shapes)")
    return DataLoader(dataset, batch_sampler=sampler, num_workers=min(workers, len(sampler) if len(sampler) > 1 else 0),
                      pin_memory=pin_memory and torch.cuda.is_available(), collate_fn=dataset.collate_fn,
                      worker_init_fn=seed_worker)
