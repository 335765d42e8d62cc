"""Training-step throughput of the torchvision path: Faster R-CNN with ResNet-50-FPN vs Swin-T-FPN
(timm, random init: the cost does not depend on the weights), on real DeepPCB images at 512.

    .venv/bin/python bench/bench_tv.py [--size 512] [--batch 1] [--steps 2] [--rounds 2] [--device cpu]

Prints images/s of a full training step (forward, loss, backward, SGD step) per backbone and
their ratio. Both are timed the same way: ``--rounds`` rounds, each building both models afresh
(the order alternating), one untimed warm-up step, then ``--steps`` timed steps; the best round
of each counts.

Target (exit code 1 when missed, saying so): Swin-T-FPN / R50-FPN throughput within [0.5, 2]
(docs/tv.md: the two cost about the same per step). A non-finite loss stops the bench (exit 1).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
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
RATIO_BAND = (0.5, 2.0)


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    images, targets = batch_of(args.batch, device)
    result = {"device": str(device), "threads": torch.get_num_threads(), "size": args.size, "batch": args.batch}
    speeds = {name: [] for name in BACKBONES}
    for r in range(args.rounds):
        for name in (list(BACKBONES) if r % 2 == 0 else list(BACKBONES)[::-1]):
            speed = images_per_second(BACKBONES[name], args.size, images, targets, args.steps, device)
            speeds[name].append(speed)
            print(f"  round {r + 1}/{args.rounds} {name:<11} {speed:8.3f} images/s", flush=True)
    for name in BACKBONES:
        result[name] = round(max(speeds[name]), 3)
        print(f"{name:<11} {result[name]:8.3f} images/s (best of {args.rounds}; train step, {args.size}px, "
              f"batch {args.batch}, {device})")
    result["swin_over_r50"] = round(result["Swin-T-FPN"] / result["R50-FPN"], 3)
    print(f"Swin-T-FPN / R50-FPN throughput: {result['swin_over_r50']:.2f}x")
    print(json.dumps(result))
    lo, hi = RATIO_BAND
    met = lo <= result["swin_over_r50"] <= hi
    print(f"{'met' if met else 'MISSED'}: Swin-T-FPN / R50-FPN throughput {result['swin_over_r50']:.2f}x (target {lo:g}x-{hi:g}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
