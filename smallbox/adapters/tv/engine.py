"""One training step, one epoch, and prediction of the torchvision path (as torchvision's
``references/detection/engine.py``), with AMP, gradient clipping and a per-iteration LR schedule."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ...errors import SmallboxError
from ...predictions import to_coco_results
from .data import collate
from .dist import Context, gather_lists


def lr_factor(iteration: int, t: dict, iters_per_epoch: int, total_iters: int) -> float:
    """Multiplier of the base LR at a global iteration: linear warm-up from ``warmup_factor``
    over ``warmup_iters``, times cosine decay to ``final_lr_factor`` or steps of ``gamma`` at the
    epochs ``steps``."""
    warm = 1.0
    if iteration < t["warmup_iters"]:
        alpha = iteration / t["warmup_iters"]
        warm = t["warmup_factor"] * (1 - alpha) + alpha
    if t["schedule"] == "cosine":
        progress = min(1.0, iteration / max(1, total_iters))
        final = t["final_lr_factor"]
        return warm * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))
    if t["schedule"] == "step":
        epoch = iteration // max(1, iters_per_epoch)
        return warm * t["gamma"] ** sum(epoch >= s for s in t["steps"])
    raise SmallboxError(f"train.schedule must be cosine or step, got {t['schedule']!r}")


def build_optimizer(model: torch.nn.Module, t: dict) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"], weight_decay=t["weight_decay"])
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])
    raise SmallboxError(f"train.optimizer must be sgd or adamw, got {t['optimizer']!r}")


def to_device(images, targets, device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return images, targets


def train_step(model, optimizer, scaler, images, targets, clip_grad: float, amp: bool) -> dict[str, float]:
    """One optimisation step on a batch; returns the losses (``"loss"`` is their sum)."""
    with torch.autocast(device_type="cuda", enabled=amp):
        losses = model(images, targets)
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise SmallboxError(f"training loss is {loss.item()} ({ {k: round(v.item(), 4) for k, v in losses.items()} }); "
                            "lower train.lr, raise train.warmup_iters or set train.clip_grad")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}


def train_one_epoch(model, optimizer, scheduler, scaler, loader, ctx: Context, t: dict, epoch: int) -> dict[str, float]:
    """Mean losses of the epoch (this rank's batches); ``scheduler`` steps every iteration."""
    model.train()
    amp = bool(t["amp"]) and ctx.device.type == "cuda"
    limit = t["limit_batches"] or len(loader)
    sums: dict[str, float] = {}
    bar = tqdm(loader, total=min(limit, len(loader)), desc=f"epoch {epoch}/{t['epochs']}", disable=not ctx.main,
               dynamic_ncols=True, leave=True)
    n = 0
    for n, (images, targets) in enumerate(bar, start=1):
        images, targets = to_device(images, targets, ctx.device)
        losses = train_step(model, optimizer, scaler, images, targets, t["clip_grad"], amp)
        scheduler.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{sums['loss'] / n:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if n >= limit:
            break
    bar.close()
    return {k: v / max(1, n) for k, v in sums.items()}


def detections_to_coco(output: dict, image_id: int, category_ids: list[int]) -> list[dict]:
    """A torchvision detection output (``boxes`` [N, 4] xyxy_abs of the original image,
    ``labels`` [N] 1..K, ``scores`` [N]) -> COCO results with the original ids. RetinaNet's
    sigmoid head also scores label 0 (background, never a positive target): dropped."""
    keep = output["labels"] > 0
    boxes = output["boxes"][keep].detach().cpu().double().numpy()
    return to_coco_results(boxes, output["scores"][keep].detach().cpu().numpy(),
                           output["labels"][keep].cpu().numpy() - 1, image_id, category_ids)


@torch.inference_mode()
def predict(model, dataset, ctx: Context, category_ids: list[int], batch: int = 4, workers: int = 0) -> list[dict]:
    """COCO results of ``model`` on every image of ``dataset`` (no augmentation), each rank
    predicting every ``world``-th image, gathered on all ranks."""
    model.eval()
    indices = list(range(ctx.rank, len(dataset), ctx.world))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch, shuffle=False,
                        num_workers=workers, collate_fn=collate)
    preds = []
    for images, targets in tqdm(loader, desc="predict", disable=not ctx.main, dynamic_ncols=True, leave=False):
        outputs = model([im.to(ctx.device) for im in images])
        for out, t in zip(outputs, targets):
            preds += detections_to_coco(out, t["image_id"], category_ids)
    return gather_lists(ctx, preds)
