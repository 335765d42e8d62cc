"""Training-loop hook: what the network really sees (input size, feature strides, how much the
original images shrink), logged when training starts."""

from __future__ import annotations


def describe_backbones(model) -> list[str]:
    """One line per backbone layer of ``model``: smallbox's layers describe themselves (name,
    weights, channels, strides); Ultralytics' ``TorchVision`` layer is named."""
    lines = []
    for m in model.modules():
        if callable(getattr(m, "describe_backbone", None)):
            lines.append(m.describe_backbone())
        elif type(m).__name__ == "TorchVision" and hasattr(m, "m"):
            lines.append(f"torchvision {type(m.m).__name__} (Ultralytics TorchVision layer)")
    return lines


def input_geometry(imgsz: int, head_strides, original_shapes=None) -> tuple[str, float | None]:
    """What the network sees: input size, feature-map sizes per head stride, and how much the
    original images are shrunk to get there (at scale 1/4.6 a 32² box is 7² at the input).

    Args:
        imgsz (int): training input side (long side after letterbox).
        head_strides (list[int]): strides of the Detect layer's inputs, e.g. [8, 16, 32].
        original_shapes (array (N, 2) | None): original (h, w) of the training images.

    Returns:
        (text, cells): the description, and how many cells of the finest feature map a 32-px
        original box spans (None without original shapes).
    """
    import numpy as np

    maps = ", ".join(f"{imgsz // int(s)}x{imgsz // int(s)} (stride {int(s)})" for s in head_strides)
    text = f"network input {imgsz}x{imgsz} -> feature maps {maps}"
    if original_shapes is None or not len(original_shapes):
        return text, None
    long_side = float(np.median(np.max(np.asarray(original_shapes), axis=1)))
    scale = imgsz / long_side
    cells = 32 * scale / int(min(head_strides))
    text += (
        f"; images: median long side {long_side:g} px, resized x{scale:.3g} "
        f"(a 32x32 box becomes {32 * scale:.3g}x{32 * scale:.3g} px, {cells:.2g}x the finest stride of {int(min(head_strides))} px)"
    )
    return text, cells


def log_input_geometry(trainer) -> None:
    """Ultralytics callback (``on_train_start``): log the effective input size, the backbone's
    feature strides and the image downscale, so that a run that resizes 1024-px images to 224 says
    so in its first lines. smallbox's trainer adds it; it logs once per trainer."""
    from ultralytics.utils import LOGGER, RANK

    if RANK not in {-1, 0} or getattr(trainer, "_smallbox_geometry_logged", False):
        return
    trainer._smallbox_geometry_logged = True
    from ultralytics.utils.torch_utils import unwrap_model

    model = unwrap_model(trainer.model)
    shapes = None
    dataset = getattr(getattr(trainer, "train_loader", None), "dataset", None)
    if dataset is not None and getattr(dataset, "labels", None):
        shapes = [lb["shape"] for lb in dataset.labels if "shape" in lb]
    imgsz = trainer.args.imgsz if isinstance(trainer.args.imgsz, int) else max(trainer.args.imgsz)
    for line in describe_backbones(model):
        LOGGER.info(f"smallbox backbone: {line}")
    text, cells = input_geometry(int(imgsz), model.stride.tolist(), shapes)
    LOGGER.info(f"smallbox input: {text}")
    if cells is not None and cells < 1:
        LOGGER.warning(f"smallbox input: a 32x32 box covers less than one cell of the finest feature map at imgsz={imgsz}; "
                       "small objects will be hard to detect (raise imgsz?)")
