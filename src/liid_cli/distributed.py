"""Multi-process training under `torchrun --nproc-per-node N -m -- liid_cli <trainer> ...` (DDP),
the one way every DDP trainer (train-mil, train, train-semantic) starts.

Only rank 0 goes through the stage runner (fingerprint, skip, atomic output, manifest). When its
stage actually runs, `announce_start` sends the resolved config and context to the other ranks,
which then run the same stage function as followers: they train their shard of the data and
write nothing. If rank 0 skips the stage (up to date) or fails before starting, it sends `None`
and the followers return.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from liid_cli.config import StageConfig
from liid_cli.runner import StageContext, StageSpec

_state = {"announced": False}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return rank() == 0


def join(config: StageConfig, context: StageContext) -> tuple[int, int, str]:
    """A trainer's first call: (rank, world size, this process's device). On rank 0 of a
    distributed run it also tells the other ranks to run the stage (`announce_start`)."""
    announce_start(config, context)
    if not is_distributed():
        return 0, 1, context.device
    device = context.device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return rank(), dist.get_world_size(), device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _broadcast(payload: Any) -> Any:
    box = [payload]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def announce_start(config: StageConfig, context: StageContext) -> None:
    """On rank 0 of a distributed run: tell the followers to run the stage with these inputs."""
    if not is_distributed() or not is_main() or _state["announced"]:
        return
    _state["announced"] = True
    _broadcast(
        {
            "config": config.model_dump(mode="json"),
            "context": {
                "run_dir": str(context.run_dir),
                "cache_dir": str(context.cache_dir),
                "index_path": str(context.index_path),
                "seed": context.seed,
                "device": context.device,
                "workers": context.workers,
                "extra_inputs": {name: str(path) for name, path in context.extra_inputs.items()},
                "fingerprint": context.fingerprint,
                "resume": context.resume,
            },
        }
    )


def run_distributed(spec: StageSpec[Any], device: str, run_on_main: Callable[[], None]) -> None:
    """Run a stage on every rank of a torchrun job; on one process just call `run_on_main`."""
    if world_size() <= 1:
        run_on_main()
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    try:
        if is_main():
            try:
                run_on_main()
            finally:
                if not _state["announced"]:
                    _broadcast(None)
        else:
            payload = _broadcast(None)
            if payload is not None:
                _follow(spec, payload)
    finally:
        dist.destroy_process_group()
        _state["announced"] = False


def _follow(spec: StageSpec[Any], payload: dict[str, Any]) -> None:
    fields = payload["context"]
    config = spec.config_model.model_validate(payload["config"])
    with tempfile.TemporaryDirectory(prefix=f"liid-rank{rank()}-") as scratch:
        context = StageContext(
            run_dir=Path(fields["run_dir"]),
            out_dir=Path(scratch),
            cache_dir=Path(fields["cache_dir"]),
            index_path=Path(fields["index_path"]),
            seed=fields["seed"],
            device=fields["device"],
            workers=fields["workers"],
            extra_inputs={name: Path(path) for name, path in fields["extra_inputs"].items()},
            fingerprint=fields["fingerprint"],
            resume=fields["resume"],
        )
        spec.run(config, context)
