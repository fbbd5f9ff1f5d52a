"""Box-to-mask acceptance on the demo set: learned pseudo masks vs the rect / ellipse / GrabCut
baselines on the box-only target classes, and round 2 vs round 1 of the alternating scheme.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_box2mask.py [--data data/demo/index_train.json]
        [--run runs/box2mask-bench] [--seeds 0 1 2] [--no-grabcut] [--no-rounds]

Source classes (masks used): ellipse, rectangle, triangle (stages/train_box2mask.yaml, demo
profile); targets (boxes only): star, cross, ring. Each seed trains its own model; the table
shows medians over seeds of the target-class mIoU, AP50 and AP75 (measured against ground truth,
which no method trains on) and the seconds each command took.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIID = str(Path(sys.executable).with_name("liid"))
TARGETS = "target_classes=[star,cross,ring]"


def liid(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([LIID, *args, "--profile", "demo", "--device", "cpu", "-q"], check=True)
    return time.perf_counter() - started


def rounds_of(run: Path) -> list[dict]:
    manifest = json.loads((run / "box2mask" / "manifest.json").read_text())
    return manifest["metrics"]["rounds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo/index_train.json"))
    parser.add_argument("--run", type=Path, default=Path("runs/box2mask-bench"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-grabcut", action="store_true")
    parser.add_argument("--no-rounds", action="store_true")
    options = parser.parse_args()

    rows: dict[str, list[tuple[dict, float]]] = {}
    baselines = ["rect", "ellipse"] + ([] if options.no_grabcut else ["grabcut"])
    for baseline in baselines:
        run = options.run / baseline
        seconds = liid(
            "box2mask",
            "--run",
            str(run),
            "--data",
            str(options.data),
            "--baseline",
            baseline,
            "--set",
            TARGETS,
        )
        rows.setdefault(baseline, []).append((rounds_of(run)[0], seconds))
    for seed in options.seeds:
        run = options.run / f"learned-seed{seed}"
        train_seconds = liid(
            "train-box2mask", "--run", str(run), "--data", str(options.data), "--seed", str(seed)
        )
        rows.setdefault("train-box2mask (s)", []).append(({}, train_seconds))
        rounds = ["--rounds", "2"] if not options.no_rounds else []
        seconds = liid(
            "box2mask", "--run", str(run), "--data", str(options.data), "--seed", str(seed), *rounds
        )
        for entry in rounds_of(run):
            rows.setdefault(f"learned round {entry['round']}", []).append((entry, seconds))

    print(
        f"{'method':<22} {'mIoU':>6} {'AP50':>6} {'AP75':>6} {'seconds':>8}   (medians over {len(options.seeds)} seed(s))"
    )
    for name, results in rows.items():
        seconds = statistics.median(s for _, s in results)
        if not results[0][0]:
            print(f"{name:<22} {'':>6} {'':>6} {'':>6} {seconds:>8.1f}")
            continue
        values = [
            statistics.median(r["ground_truth_eval"][key] for r, _ in results)
            for key in ("mIoU", "AP50", "AP75")
        ]
        print(f"{name:<22} {values[0]:>6.3f} {values[1]:>6.3f} {values[2]:>6.3f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
