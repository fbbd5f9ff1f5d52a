"""Cost of the MIL network against a plain classifier, and dump throughput, on the CPU (or --device).

1. One training step (forward, loss, backward, SGD step; one image per mini-batch) of the MIL network
   (RoI pooling of `--proposals` boxes, L_Att + L_MIL + L_Cent, centre update) over one step of the
   plain multi-label classifier (GAP, BCE) with the same backbone and image size. Goal: <= 1.15.
2. Images/s of the dump's forward pass (MIL network, softmax, float16 features), batches of 8.

    python benchmarks/bench_mil.py                       # EfficientNet-Lite0 at 160 px (demo) and resnet18 at 224 px
    python benchmarks/bench_mil.py --case resnet50:448:pool --repeats 5   # the paper default
Prints medians over `--repeats` timed steps after `--warmup` untimed ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from liid_cli.models.backbones import TrunkConfig
from liid_cli.models.cam import CamClassifier
from liid_cli.models.losses import update_centres
from liid_cli.models.mil import ClassCentres, LossConfig, MilNetwork, image_losses

NUM_CLASSES = 20
LOSSES = LossConfig(
    attention=True,
    mil=True,
    centre=True,
    alpha=0.5,
    beta=0.5,
    gamma=0.1,
    eta=0.75,
    r=5.0,
    theta=0.01,
    pooling="box",
)


def median_seconds(*steps: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    """Median time of each step; the steps alternate, so load from other processes hits all alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, collected in zip(steps, times, strict=True):
            started = time.perf_counter()
            step()
            collected.append(time.perf_counter() - started)
    return [statistics.median(collected) for collected in times]


def random_boxes(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    corners = torch.rand(count, 2, 2, generator=generator) * size
    low, high = corners.min(dim=1).values, corners.max(dim=1).values
    return torch.cat([low, torch.maximum(high, low + 8)], dim=1).clamp(0, size)


def bench_case(
    backbone: str, size: int, roi_op: str, proposals: int, device: str, warmup: int, repeats: int
) -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, size, size, generator=generator).to(device)
    labels = torch.zeros(NUM_CLASSES + 1, device=device)
    labels[[0, 3, 7]] = 1.0
    boxes = random_boxes(proposals, size, generator).to(device)
    cam_scores = (torch.rand(proposals, NUM_CLASSES, generator=generator) * 2).to(device)

    def synchronise() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    trunk = TrunkConfig(backbone=backbone, weights="none", output_stride=16, norm="frozen_bn",
                        frozen_levels=0)
    classifier = CamClassifier(trunk, NUM_CLASSES).to(device).train()
    classifier_opt = torch.optim.SGD(classifier.parameters(), lr=1e-4, momentum=0.9)

    def classifier_step() -> None:
        loss = F.binary_cross_entropy_with_logits(classifier(image), labels[None, 1:])
        classifier_opt.zero_grad(set_to_none=True)
        loss.backward()
        classifier_opt.step()
        synchronise()

    network = MilNetwork(trunk, NUM_CLASSES, roi_op, 7).to(device).train()
    centres = ClassCentres(NUM_CLASSES, network.feature_dim).to(device)
    mil_opt = torch.optim.SGD(network.parameters(), lr=1e-4, momentum=0.9)

    def mil_step() -> None:
        logits, features = network(image, [boxes])
        result = image_losses(logits, features, labels, cam_scores, centres, LOSSES)
        mil_opt.zero_grad(set_to_none=True)
        result.total.backward()
        mil_opt.step()
        update_centres(
            centres.centres, centres.known, features.float(), result.assigned, LOSSES.theta
        )
        synchronise()

    plain, mil = median_seconds(classifier_step, mil_step, warmup=warmup, repeats=repeats)
    print(
        f"{backbone} @ {size} px, {roi_op}, {proposals} proposals, {device}: "
        f"classifier step {plain * 1000:.1f} ms, MIL step {mil * 1000:.1f} ms, "
        f"ratio {mil / plain:.3f} (goal <= 1.15)"
    )

    network.eval()
    batch = torch.randn(8, 3, size, size, generator=generator).to(device)
    batch_boxes = [random_boxes(proposals, size, generator).to(device) for _ in range(8)]

    @torch.no_grad()
    def dump_batch() -> None:
        logits, features = network(batch, batch_boxes)
        logits.softmax(dim=1).cpu()
        features.to(torch.float16).cpu()

    (seconds,) = median_seconds(
        dump_batch, warmup=max(1, warmup // 2), repeats=max(3, repeats // 2)
    )
    print(f"{backbone} @ {size} px: dump forward {8 / seconds:.1f} images/s (batches of 8)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", help="BACKBONE:SIZE[:align|pool] (repeatable)")
    parser.add_argument(
        "--proposals", type=int, default=20, help="boxes per image (paper: 20 on VOC)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for case in args.case or ["tf_efficientnet_lite0:160", "resnet18:224"]:
        backbone, size, roi_op = (case + ":align").split(":")[:3]
        bench_case(
            backbone, int(size), roi_op, args.proposals, args.device, args.warmup, args.repeats
        )


if __name__ == "__main__":
    main()
