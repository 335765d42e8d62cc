"""Training-step throughput of the torchvision path: Faster R-CNN with ResNet-50-FPN vs Swin-T-FPN
(timm, random init: the cost does not depend on the weights), on real DeepPCB images at 512.

    .venv/bin/python bench/bench_tv.py [--size 512] [--batch 1] [--steps 2] [--device cpu]

Prints images/s of a full training step (forward, loss, backward, SGD step) per backbone and
their ratio; a warm-up step is not timed.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from smallbox.adapters.tv.data import CocoDetection, collate
from smallbox.adapters.tv.engine import build_optimizer, to_device, train_step
from smallbox.adapters.tv.models import build_model
from smallbox.adapters.tv.recipe import DEFAULTS
from smallbox.datasets import load_coco

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = {"R50-FPN": "resnet50", "Swin-T-FPN": "timm:swin_tiny_patch4_window7_224"}


def batch_of(n: int, device):
    coco = load_coco(ROOT / "data/deeppcb/annotations/train.json", ROOT / "data/deeppcb/images")
    ds = CocoDetection(coco, coco.category_ids)
    images, targets = collate([ds[i] for i in range(n)])
    return to_device(images, targets, device)


def images_per_second(backbone: str, size: int, images, targets, steps: int, device) -> float:
    m = copy.deepcopy(DEFAULTS["model"])
    m.update(backbone=backbone, min_size=size, max_size=size)
    torch.manual_seed(0)
    model = build_model(m, 6).to(device).train()
    optimizer = build_optimizer(model, dict(DEFAULTS["train"], lr=0.001))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    train_step(model, optimizer, scaler, list(images), list(targets), 10.0, False)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, scaler, list(images), list(targets), 10.0, False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(images) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    images, targets = batch_of(args.batch, device)
    result = {"device": str(device), "threads": torch.get_num_threads(), "size": args.size, "batch": args.batch}
    for name, backbone in BACKBONES.items():
        result[name] = round(images_per_second(backbone, args.size, images, targets, args.steps, device), 3)
        print(f"{name:<11} {result[name]:8.3f} images/s (train step, {args.size}px, batch {args.batch}, {device})", flush=True)
    result["swin_over_r50"] = round(result["Swin-T-FPN"] / result["R50-FPN"], 3)
    print(f"Swin-T-FPN / R50-FPN throughput: {result['swin_over_r50']:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
