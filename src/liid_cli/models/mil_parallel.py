"""The MIL network under torchrun: process setup, each process's share of an epoch, and the
class centres averaged over the processes after every step."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from liid_cli.models.mil import ClassCentres


def distributed_setup(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process; initialises DDP when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    return dist.get_rank(), world, device


def epoch_order(count: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """This process's share of a shuffled epoch; every process gets the same number of images."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(count, generator=generator).tolist()
    per_process = count // world if world > 1 else count
    return order[rank::world][:per_process]


def average_centres(centres: ClassCentres) -> None:
    """Average each class centre over the processes that have seen the class (a process that has
    not holds a zero centre, which must not pull the average towards 0)."""
    known = centres.known.to(centres.centres.dtype)
    total = centres.centres * known[:, None]
    dist.all_reduce(total)
    dist.all_reduce(known)
    seen = known > 0
    centres.centres[seen] = total[seen] / known[seen, None]
    centres.known.copy_(seen)
