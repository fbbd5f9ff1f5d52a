"""The MIL network under torchrun (started by distributed.py): each process's share of an epoch,
and the class centres averaged over the processes after every step."""

from __future__ import annotations

import torch
import torch.distributed as dist

from liid_cli.models.mil import ClassCentres


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
