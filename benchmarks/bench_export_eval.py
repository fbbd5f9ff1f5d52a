"""Time `export-coco`, instance evaluation and `viz` at demo scale (300 train images of 160 px).

The cut is a known answer written straight from the ground truth (`fake_runs.make_cut_run`: each
object, a copy shifted by 2 px with a lower score, two noise regions labelled 0; CAM agreement 1
for objects and copies), so the numbers measure export/eval/viz, not the upstream stages. Prints medians over a few repeats.

    .venv/bin/python benchmarks/bench_export_eval.py [--repeats 3] [--images 300] [--size 160]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fake_runs import make_cut_run

from liid_cli import artifacts
from liid_cli.config import load_stage_config
from liid_cli.data.demo import DemoSpec, generate
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.log import setup_logging
from liid_cli.runner import run_stage
from liid_cli.stages import export_coco
from liid_cli.viz.run import VizConfig, run_viz


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=DemoSpec.n_train, help="train images")
    parser.add_argument("--size", type=int, default=DemoSpec.size, help="demo image size (px)")
    args = parser.parse_args()
    setup_logging(quiet=True)
    with tempfile.TemporaryDirectory() as folder:
        data, run_dir = Path(folder) / "demo", Path(folder) / "run"
        generate(data, DemoSpec(n_train=args.images, n_val=1, size=args.size))
        index_path = artifacts.index_path(data, "train")
        make_cut_run(index_path, run_dir)
        config = load_stage_config("export-coco", export_coco.ExportCocoConfig)
        export = median_seconds(
            lambda: run_stage(export_coco.SPEC, config, run_dir=run_dir, index_path=index_path,
                              force=True), args.repeats)
        pseudo = artifacts.stage_dir(run_dir, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
        gt = artifacts.gt_path(data, "train")
        evaluate = median_seconds(lambda: evaluate_instances(gt, pseudo), args.repeats)
        viz_config = load_stage_config("viz", VizConfig)
        viz = median_seconds(lambda: run_viz(run_dir, None, viz_config, 0), args.repeats)
    print(f"images: {args.images} of {args.size} px, {args.repeats} repeat(s)")
    print(f"export-coco: median {export:.2f} s ({1000 * export / args.images:.1f} ms/image)")
    print(f"evaluate_instances: median {evaluate:.2f} s "
          f"({1000 * evaluate / args.images:.1f} ms/image, {evaluate / export:.2f}x export)")
    print(f"viz (grid of {viz_config.max_images} images + report): median {viz:.2f} s "
          f"({viz / export:.2f}x export)")


if __name__ == "__main__":
    main()
