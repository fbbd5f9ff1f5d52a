"""Seconds per training iteration of the downstream models: demo profile vs default settings.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train.py [--iters 5] [--device cpu]

Builds each model from its stage YAML (stages/train.yaml, stages/train_semantic.yaml), feeds it
real demo images (a small demo set generated into a temporary folder; the default profile
resizes them to its 800 px / 513 px crops as in training) and times forward + backward + SGD
step after one warm-up iteration. Prints the median and the default/demo ratio per task.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from liid_cli.config import load_stage_config
from liid_cli.data.demo import DemoSpec, generate
from liid_cli.data.index import load_index
from liid_cli.downstream import instance, semantic
from liid_cli.downstream.instance_data import InstanceDataset, collate, load_instance_records
from liid_cli.downstream.models import build_instance_model, build_semantic_model
from liid_cli.downstream.semantic_data import SemanticDataset, load_semantic_records
from liid_cli.stages.train import TrainConfig
from liid_cli.stages.train_semantic import TrainSemanticConfig


def time_iterations(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    iters: int,
    compute_losses: Callable[[torch.nn.Module, Any, torch.device], dict[str, torch.Tensor]],
) -> list[float]:
    model.to(device).train()
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9
    )
    times = []
    for batch in islice(cycle(loader), iters + 1):
        started = time.perf_counter()
        loss = torch.stack(list(compute_losses(model, batch, device).values())).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times[1:]  # the first iteration warms up allocators and caches


def bench_instance(
    data: Path, profile: str | None, device: torch.device, iters: int
) -> list[float]:
    config = load_stage_config("train", TrainConfig, profile=profile, overrides=["weights=none"])
    index = load_index(data / "index_train.json")
    dataset = InstanceDataset(load_instance_records(index, data / "gt_train.json"), config.flip)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, collate_fn=collate)
    model = build_instance_model(config.model, index.classes.num_classes, "none")
    return time_iterations(model, loader, device, iters, instance.compute_losses)


def bench_semantic(
    data: Path, profile: str | None, device: torch.device, iters: int
) -> list[float]:
    config = load_stage_config(
        "train-semantic", TrainSemanticConfig, profile=profile, overrides=["weights=none"]
    )
    index = load_index(data / "index_train.json")
    records = load_semantic_records(index, data / "gt_train.json", annotated_only=True)
    dataset = SemanticDataset(records, index, config.crop_size, config.scale_range, config.flip)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True)
    model = build_semantic_model(config.model, index.classes.num_classes, "none")
    return time_iterations(model, loader, device, iters, semantic.compute_losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per setting")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["instance", "semantic"])
    parser.add_argument("--profiles", nargs="+", default=["demo", "default"])
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    benches = {"instance": bench_instance, "semantic": bench_semantic}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "demo"
        generate(data, DemoSpec(n_train=32, n_val=1, size=160, seed=0))
        for task in args.tasks:
            medians = {}
            for name in args.profiles:
                profile = None if name == "default" else name
                times = benches[task](data, profile, device, args.iters)
                medians[name] = statistics.median(times)
                print(
                    f"{task:9s} {name:8s} median {medians[name]:.3f} s/iter "
                    f"(min {min(times):.3f}, max {max(times):.3f}, {len(times)} iterations)"
                )
            if {"demo", "default"} <= set(medians):
                ratio = medians["default"] / medians["demo"]
                print(f"{task:9s} default/demo ratio {ratio:.1f}x")


if __name__ == "__main__":
    main()
