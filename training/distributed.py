"""Data-parallel training with PyTorch's own engine: torchrun + DistributedDataParallel.

`torchrun --nproc_per_node=N -m training fit ...` sets RANK, WORLD_SIZE and
LOCAL_RANK; this module turns them into a process group (NCCL on GPUs, gloo on
CPUs). Without them, training runs as a single process and nothing here is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main rank writes logs, progress bars and artifacts."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def current() -> Rank:
    """This process's place in the torchrun job (a single-process Rank outside torchrun)."""
    return Rank(
        rank=int(os.environ.get("RANK", "0")),
        world=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def start(rank: Rank, device: torch.device) -> None:
    """Join the process group: NCCL when training on CUDA, gloo on the CPU."""
    if not rank.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def from_rank_zero(rank: Rank, value: int, device: torch.device) -> int:
    """Rank 0's value, broadcast to every rank, so that no rank can go by its own."""
    if not rank.distributed:
        return value
    held = torch.tensor([value], device=device)
    dist.broadcast(held, src=0)
    return int(held.item())


def agree(rank: Rank, decision: bool, device: torch.device) -> bool:
    """Rank 0's decision, broadcast to every rank, so that no rank can decide differently."""
    return bool(from_rank_zero(rank, 1 if decision else 0, device))


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(rank: Rank, device: torch.device) -> torch.device:
    """Under torchrun each rank takes its own GPU, by LOCAL_RANK."""
    if device.type == "cuda" and rank.distributed:
        return torch.device("cuda", rank.local_rank)
    return device
