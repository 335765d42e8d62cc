"""``torchrun`` support: one process per GPU, DDP, results gathered on rank 0."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Context:
    """Where this process runs: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device_setting: str = "auto") -> Context:
    """Read torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) and start the
    process group (NCCL on GPUs, Gloo on CPU); a single process when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_setting, local_rank)
    if world > 1 and not torch_dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world, device)


def _device(setting: str, local_rank: int) -> torch.device:
    if setting == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def gather_lists(ctx: Context, items: list) -> list:
    """Concatenation of every rank's ``items`` (all ranks get it)."""
    if not ctx.distributed:
        return items
    parts = [None] * ctx.world
    torch_dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def sync_buffers(ctx: Context, module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, in place.

    DDP broadcasts buffers at the start of each training forward, so after the last step every
    rank holds the statistics of its own last batch. Evaluating with those would score each
    rank's share of the val images with a slightly different model than the one rank 0 saves.
    """
    if ctx.distributed:
        for buffer in module.buffers():
            torch_dist.broadcast(buffer, src=0)


def from_main(ctx: Context, obj):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        torch_dist.barrier()


def teardown(ctx: Context) -> None:
    if ctx.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
