"""The embedded demo data set: coloured shapes on textured clutter, with instance ground truth.

Colour never gives the class away (objects and background draw from the same colour space). Each
class has its own shape and its own surface pattern, as real classes have their own look (a
zebra's stripes): with shape alone, a small CNN trained from scratch on 300 weakly labelled images
stays near chance (docs/design.md), and the demo must teach something in a CPU minute.
Class-less distractor blobs, occlusion and rotated shapes of varied size and aspect keep the
segmentation non-trivial. Everything is deterministic from the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from liid_cli import artifacts, masks
from liid_cli.data.index import coco_ground_truth, write_index
from liid_cli.fileio import atomic_path, write_json
from liid_cli.log import track

Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]
# A surface pattern in [-1, 1] from pixel offsets (x, y) along the object's axes.
Pattern = Callable[[np.ndarray, np.ndarray], np.ndarray]
PATTERN_PERIOD = 9.0  # pixels


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + v**2 <= 1.0


def _rectangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v <= 0.9) & (v >= 2.0 * np.abs(u) - 1.0)


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    turn = (np.arctan2(v, u) * 5.0 / (2.0 * np.pi)) % 1.0
    tip = np.abs(turn - 0.5) * 2.0
    return np.hypot(u, v) <= 0.4 + 0.6 * tip**2


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return ((np.abs(u) <= 0.32) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 1.0))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius = np.hypot(u, v)
    return (radius <= 1.0) & (radius >= 0.55)


def _spokes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sign(np.sin(6 * np.arctan2(y, x)))


def _stripes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sign(np.sin(2 * np.pi * x / PATTERN_PERIOD))


def _checker(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cell = PATTERN_PERIOD / 2
    return np.sign(np.sin(np.pi * x / cell) * np.sin(np.pi * y / cell))


def _rings(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sign(np.sin(2 * np.pi * np.hypot(x, y) / PATTERN_PERIOD))


def _dots(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    wave = np.cos(2 * np.pi * x / PATTERN_PERIOD) * np.cos(2 * np.pi * y / PATTERN_PERIOD)
    return np.where(wave > 0.3, 1.0, -1.0)


def _chevrons(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sign(np.sin(2 * np.pi * (y + np.abs(x)) / PATTERN_PERIOD))


SHAPES: dict[str, Shape] = {
    "ellipse": _ellipse,
    "rectangle": _rectangle,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
}
PATTERNS: dict[str, Pattern] = {
    "ellipse": _spokes,
    "rectangle": _stripes,
    "triangle": _checker,
    "star": _rings,
    "cross": _dots,
    "ring": _chevrons,
}
INSTANCE_COUNT_PROBS = (0.08, 0.32, 0.30, 0.18, 0.12)  # 0..4 instances per image


@dataclass(frozen=True)
class DemoSpec:
    n_train: int = 300
    n_val: int = 100
    size: int = 160
    seed: int = 0


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hue = rng.uniform(0, 1)
    saturation = rng.uniform(0.35, 1.0)
    value = rng.uniform(0.35, 1.0)
    rgb = np.array(Image.fromarray(
        np.array([[[hue * 255, saturation * 255, value * 255]]], dtype=np.uint8), "HSV"
    ).convert("RGB"), dtype=np.float32)[0, 0]
    return rgb / 255.0


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    coarse = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
    size = (coarse.shape[1] * cell, coarse.shape[0] * cell)
    fine = np.asarray(Image.fromarray(coarse, "F").resize(size, Image.Resampling.BICUBIC))[:height, :width]
    return (fine - fine.mean()) / (fine.std() + 1e-6)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base, second = _random_colour(rng), _random_colour(rng)
    angle = rng.uniform(0, np.pi)
    gradient = (xs * np.cos(angle) + ys * np.sin(angle)) / max(height, width)
    mix = np.clip(gradient + 0.35 * _smooth_noise(rng, height, width, 24), 0, 1)[..., None]
    image = base * (1 - mix) + second * mix
    stripe_angle, period = rng.uniform(0, np.pi), rng.uniform(6, 18)
    stripes = np.sin(2 * np.pi * (xs * np.cos(stripe_angle) + ys * np.sin(stripe_angle)) / period)
    image += rng.uniform(0.0, 0.12) * stripes[..., None]
    image += 0.06 * _smooth_noise(rng, height, width, 3)[..., None]
    return image


def _distractor(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An irregular class-less blob."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(0.06, 0.2) * min(height, width)
    distance = np.hypot(ys - cy, xs - cx) / radius
    return distance + 0.45 * _smooth_noise(rng, height, width, 8) < 1.0


def _shape_mask(
    rng: np.random.Generator, name: str, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A randomly placed, sized and rotated instance of class `name`: mask and surface pattern."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    scale = rng.uniform(0.12, 0.3) * min(height, width)
    aspect = np.exp(rng.uniform(-0.45, 0.45))
    half_w, half_h = scale * aspect, scale / aspect
    cy = rng.uniform(0.15, 0.85) * height
    cx = rng.uniform(0.15, 0.85) * width
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = ys - cy, xs - cx
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    pattern = rng.uniform(0.25, 0.35) * PATTERNS[name](along, across)
    return SHAPES[name](along / half_w, across / half_h), pattern


def _paint(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, pattern: np.ndarray | None = None
) -> None:
    height, width = mask.shape
    colour = _random_colour(rng)
    texture = 0.08 * _smooth_noise(rng, height, width, rng.choice([2, 4]))
    shade = 0.1 * _smooth_noise(rng, height, width, 32)
    if pattern is not None:
        texture = texture + pattern
    image[mask] = colour + (texture + shade)[mask][:, None]


def generate_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    class_names: list[str],
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image (uint8 RGB) and its visible instances as (class index, mask)."""
    image = _background(rng, height, width)
    for _ in range(rng.integers(1, 4)):
        _paint(image, _distractor(rng, height, width), rng)
    placed: list[tuple[int, np.ndarray]] = []
    n_instances = rng.choice(len(INSTANCE_COUNT_PROBS), p=INSTANCE_COUNT_PROBS)
    for _ in range(n_instances):
        for _attempt in range(10):
            cls = int(rng.integers(len(class_names)))
            full, pattern = _shape_mask(rng, class_names[cls], height, width)
            occluded = [(c, m & ~full) for c, m in placed]
            if all(m.sum() >= 0.45 * before.sum() for (_, m), (_, before) in zip(occluded, placed)):
                placed = occluded + [(cls, full)]
                _paint(image, full, rng, pattern)
                break
    if rng.uniform() < 0.5:  # a distractor in front occludes objects too
        blob = _distractor(rng, height, width)
        placed = [(c, m & ~blob) for c, m in placed]
        _paint(image, blob, rng)
    instances = [(c, m) for c, m in placed if m.sum() >= 60]
    pixels = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return pixels, instances


def generate(out_dir: Path, spec: DemoSpec) -> dict[str, int]:
    """Write the demo data set atomically to `out_dir`; return counts per split."""
    class_names = list(SHAPES)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(class_names)]
    counts: dict[str, int] = {}
    with atomic_path(out_dir) as tmp:
        (tmp / artifacts.IMAGES_DIR).mkdir(parents=True)
        image_id = 0
        for split, n_images, stream in (("train", spec.n_train, 0), ("val", spec.n_val, 1)):
            rng = np.random.default_rng([spec.seed, stream])
            images, annotations = [], []
            for i in track(range(n_images), f"demo {split}"):
                image_id += 1
                height = int(spec.size * rng.uniform(0.85, 1.1))
                width = int(spec.size * rng.uniform(0.85, 1.1))
                pixels, instances = generate_image(rng, height, width, class_names)
                name = f"{split}_{i:04d}"
                file_name = f"{name}.png"
                Image.fromarray(pixels).save(tmp / artifacts.IMAGES_DIR / file_name)
                record: dict[str, Any] = {
                    "id": image_id, "name": name, "file_name": file_name,
                    "width": width, "height": height,
                    "labels": sorted({categories[c]["id"] for c, _ in instances}), "boxes": [],
                }
                for cls, mask in instances:
                    rle = masks.encode(mask)
                    bbox = masks.xyxy_to_xywh(masks.box_xyxy(mask))
                    record["boxes"].append({"bbox": bbox, "category_id": categories[cls]["id"]})
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": image_id,
                        "category_id": categories[cls]["id"], "segmentation": rle,
                        "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0,
                    })
                images.append(record)
            gt_name = artifacts.GT_FILE.format(split=split)
            write_json(tmp / gt_name, coco_ground_truth(images, categories, annotations), indent=None)
            write_index(
                artifacts.index_path(tmp, split), name="demo", split=split, categories=categories,
                images=images, image_root=artifacts.IMAGES_DIR, ground_truth=gt_name,
            )
            counts[split] = n_images
        write_json(tmp / "info.json", {"generator": "liid data demo", **spec.__dict__, "classes": class_names})
    return counts
