"""Box-to-mask acceptance on the demo set: learned pseudo masks vs the rect / ellipse / GrabCut
baselines on the box-only target classes, and round 2 vs round 1 of the alternating scheme.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_box2mask.py [--data data/demo/index_train.json]
        [--run runs/box2mask-bench] [--seeds 0 1 2] [--baselines rect ellipse] [--no-grabcut]
        [--no-rounds] [--train-set iterations=3] [--set retrain_iterations=3]

Source classes (masks used): ellipse, rectangle, triangle (stages/train_box2mask.yaml, demo
profile); targets (boxes only): star, cross, ring. Each seed trains its own model; the table
shows medians over seeds of the target-class mIoU, AP50 and AP75 (measured against ground truth,
which no method trains on) and the seconds each command took, and the ratio of the learned
masks' mIoU to the best baseline's. `--train-set` / `--set` override settings of train-box2mask /
box2mask (e.g. a few iterations for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGETS = "target_classes=[star,cross,ring]"
BASELINES = ("rect", "ellipse", "grabcut")


def liid(*args: str, settings: list[str]) -> float:
    """Seconds one `liid` command took (a child process, demo profile, CPU)."""
    overrides = [part for setting in settings for part in ("--set", setting)]
    command = [sys.executable, "-m", "liid_cli", *args, *overrides]
    started = time.perf_counter()
    subprocess.run([*command, "--profile", "demo", "--device", "cpu", "-q"], check=True)
    return time.perf_counter() - started


def rounds_of(run: Path) -> list[dict[str, Any]]:
    manifest = json.loads((run / "box2mask" / "manifest.json").read_text())
    return manifest["metrics"]["rounds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo/index_train.json"))
    parser.add_argument("--run", type=Path, default=Path("runs/box2mask-bench"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES))
    parser.add_argument("--no-grabcut", action="store_true", help="leave grabcut out of --baselines")
    parser.add_argument("--no-rounds", action="store_true")
    parser.add_argument(
        "--train-set", action="append", default=[], help="train-box2mask KEY=VALUE (repeatable)"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="learned box2mask KEY=VALUE (repeatable)"
    )
    options = parser.parse_args()

    rows: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for baseline in options.baselines:
        if options.no_grabcut and baseline == "grabcut":
            continue
        run = options.run / baseline
        seconds = liid(
            "box2mask",
            "--run",
            str(run),
            "--data",
            str(options.data),
            "--baseline",
            baseline,
            settings=[TARGETS],
        )
        rows.setdefault(baseline, []).append((rounds_of(run)[0], seconds))
    for seed in options.seeds:
        run = options.run / f"learned-seed{seed}"
        train_seconds = liid(
            "train-box2mask", "--run", str(run), "--data", str(options.data), "--seed", str(seed),
            settings=options.train_set,
        )
        rows.setdefault("train-box2mask (s)", []).append(({}, train_seconds))
        rounds = ["--rounds", "2"] if not options.no_rounds else []
        seconds = liid(
            "box2mask", "--run", str(run), "--data", str(options.data), "--seed", str(seed), *rounds,
            settings=options.set,
        )
        for entry in rounds_of(run):
            rows.setdefault(f"learned round {entry['round']}", []).append((entry, seconds))

    print(
        f"{'method':<22} {'mIoU':>6} {'AP50':>6} {'AP75':>6} {'seconds':>8}"
        f"   (medians over {len(options.seeds)} seed(s))"
    )
    miou: dict[str, float] = {}
    for name, results in rows.items():
        seconds = statistics.median(s for _, s in results)
        if not results[0][0]:
            print(f"{name:<22} {'':>6} {'':>6} {'':>6} {seconds:>8.1f}")
            continue
        values = [
            statistics.median(r["ground_truth_eval"][key] for r, _ in results)
            for key in ("mIoU", "AP50", "AP75")
        ]
        miou[name] = values[0]
        print(f"{name:<22} {values[0]:>6.3f} {values[1]:>6.3f} {values[2]:>6.3f} {seconds:>8.1f}")
    baseline = max((name for name in miou if name in BASELINES), key=lambda n: miou[n], default=None)
    if baseline is not None and miou[baseline] > 0:
        for name in (name for name in miou if name.startswith("learned")):
            print(f"mIoU ratio {name} / {baseline}: {miou[name] / miou[baseline]:.2f}")

if __name__ == "__main__":
    main()
