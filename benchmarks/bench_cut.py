"""Benchmark `liid cut` on realistic synthetic dumps: wall time, peak memory, kNN recall, LP gap.

    .venv/bin/python benchmarks/bench_cut.py                       # 200K SOPs, K=20, 2048-d, 3 runs
    .venv/bin/python benchmarks/bench_cut.py --images 10000 25000 50000 --classes 80 --runs 1
    .venv/bin/python benchmarks/bench_cut.py --images 10000 --device cuda --set knn_backend=exact

Each size gets a synthetic dump (cached under --root), then `liid cut --force` runs in a child
process `--runs` times; the table shows medians. Peak memory is the child's max RSS (os.wait4).
The load average is printed because timings on a shared machine are not a quiet machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from synthetic_dump import SyntheticDumpSpec, write_synthetic_dump

ROOT = Path(__file__).resolve().parents[1]
COCO_LABEL_COUNTS = (0.25, 0.2, 0.17, 0.13, 0.1, 0.08, 0.07)


def dump_for(spec: SyntheticDumpSpec, root: Path) -> tuple[Path, Path]:
    labels = "coco" if spec.label_count_weights == COCO_LABEL_COUNTS else "voc"
    folder = root / (
        f"n{spec.num_images}_m{spec.sops_per_image}_k{spec.num_classes}_d{spec.feature_dim}"
        f"_{labels}_s{spec.seed}"
    )
    index, run = folder / "index_train.json", folder / "run"
    if not (run / "dump" / "manifest.json").is_file():
        started = time.perf_counter()
        write_synthetic_dump(folder, spec)
        print(
            f"generated {spec.num_images * spec.sops_per_image:,} SOPs "
            f"in {time.perf_counter() - started:.0f} s"
        )
    return index, run


def run_cut(index: Path, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "liid_cli",
        "cut",
        "--run",
        str(run),
        "--data",
        str(index),
        "--force",
        "--quiet",
        "--workers",
        str(args.workers),
        "--device",
        args.device,
    ]
    for setting in args.set:
        command += ["--set", setting]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.workers))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"liid cut failed (status {status}): {' '.join(command)}")
    metrics = json.loads((run / "cut" / "manifest.json").read_text())["metrics"]
    return {
        "wall": wall,
        "peak_gb": usage.ru_maxrss / 2**20,
        "load": (load_before + os.getloadavg()[0]) / 2,
        "metrics": metrics,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def report(sops: int, classes: int, results: list[dict[str, Any]]) -> None:
    metrics = results[-1]["metrics"]
    seconds = {
        key: median([r["metrics"]["seconds"][key] for r in results]) for key in metrics["seconds"]
    }
    print(
        f"\n== {sops:,} SOPs, K={classes}: {len(results)} run(s), medians; "
        "load average during runs "
        f"{median([r['load'] for r in results]):.1f} on {os.cpu_count()} cores (machine shared)"
    )
    print(
        "| wall s | peak GB | recall@3 | certified SOPs | gap (all certified) | "
        "worst component gap | "
        "components | largest |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {median([r['wall'] for r in results]):.1f} | "
        f"{median([r['peak_gb'] for r in results]):.2f} | "
        f"{metrics['knn_recall']:.4f} | {metrics['certified_sops']:,} / {metrics['sops']:,} | "
        f"{_or_nan(metrics['gap']):.2e} | "
        f"{_or_nan(metrics['max_component_gap']):.2e} | "
        f"{metrics['components']:,} | {metrics['largest_component']:,} |"
    )
    print("stage seconds (median): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(
        "component sizes: "
        + ", ".join(
            f"{k}: {v['components']:,} ({v['sops']:,} SOPs)"
            for k, v in metrics["component_sizes"].items()
        )
    )
    print(
        f"solver status: {metrics['solver_status']}; "
        f"expansion {metrics['expansion_cycles']} cycles; "
        f"backend {metrics['knn_backend']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, nargs="+", default=[10_000], help="images (x20 SOPs each)"
    )
    parser.add_argument("--sops-per-image", type=int, default=20)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument(
        "--coco-labels",
        action="store_true",
        help="1-7 labelled classes per image (mean ~3, like COCO) instead of VOC-like 1-3",
    )
    parser.add_argument("--runs", type=int, default=3, help="0 only generates the synthetic dump")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--set", action="append", default=[], help="extra `--set key=value` for liid cut"
    )
    parser.add_argument("--root", type=Path, default=Path("/tmp/liid-bench-cut"))
    args = parser.parse_args()
    for images in args.images:
        spec = SyntheticDumpSpec(
            num_images=images,
            sops_per_image=args.sops_per_image,
            num_classes=args.classes,
            feature_dim=args.dim,
            label_count_weights=COCO_LABEL_COUNTS if args.coco_labels else (0.6, 0.28, 0.12),
        )
        index, run = dump_for(spec, args.root)
        results = [run_cut(index, run, args) for _ in range(args.runs)]
        if results:  # --runs 0 only generates the dump
            report(images * args.sops_per_image, args.classes, results)


if __name__ == "__main__":
    main()
