"""Pictures: instance overlays (mask, outline, class name and score), palette renderings, grids.

Class colours come from the VOC palette, so an instance has the colour of its class in the
semantic palette PNGs too. Small images are scaled up before drawing so the text stays sharp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from liid_cli import masks
from liid_cli.palette import voc_palette

PALETTE = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)
BACKGROUND = (245, 245, 245)
TEXT_SIZE = 13


@dataclass(frozen=True)
class Instance:
    """One mask to draw: COCO RLE, internal class id (palette colour), caption."""

    rle: dict
    label: int
    caption: str


def _font(size: int = TEXT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _cell_size(height: int, width: int, cell: int) -> tuple[int, int]:
    """(width, height) with the longer side `cell` px."""
    factor = cell / max(height, width)
    return max(1, round(width * factor)), max(1, round(height * factor))


def _scaled(image: np.ndarray, cell: int) -> Image.Image:
    size = _cell_size(*image.shape[:2], cell)
    return Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def draw_instances(
    image: np.ndarray, instances: Sequence[Instance], cell: int, alpha: float = 0.45
) -> Image.Image:
    """The image scaled to `cell` px (longer side), every instance blended, outlined, captioned."""
    base = _scaled(image, cell)
    canvas = np.asarray(base, dtype=np.float32).copy()
    size = base.size
    decoded = [
        np.asarray(Image.fromarray(masks.decode(inst.rle)).resize(size, Image.Resampling.NEAREST))
        for inst in instances
    ]
    for inst, mask in zip(instances, decoded, strict=True):
        colour = PALETTE[inst.label].astype(np.float32)
        canvas[mask] = canvas[mask] * (1.0 - alpha) + colour * alpha
        canvas[_outline(mask)] = colour
    result = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    font = _font()
    for inst, mask in zip(instances, decoded, strict=True):
        x0, y0, _, _ = masks.box_xyxy(mask)
        left, top, right, bottom = draw.textbbox((x0, y0), inst.caption, font=font)
        top_shift = min(y0, bottom - top)  # caption above the box when there is room
        box = (left, top - top_shift, right + 2, bottom - top_shift)
        draw.rectangle(box, fill=tuple(int(c) for c in PALETTE[inst.label]))
        draw.text(
            (x0 + 1, y0 - top_shift),
            inst.caption,
            fill=_text_colour(PALETTE[inst.label]),
            font=font,
        )
    return result


def render_label_map(label_map: np.ndarray, cell: int) -> Image.Image:
    """A palette label map as RGB (VOC colours; 255 = cream 'ignore'), scaled to `cell` px."""
    image = Image.fromarray(PALETTE[label_map])
    return image.resize(_cell_size(*label_map.shape, cell), Image.Resampling.NEAREST)


def _text_colour(background: np.ndarray) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def grid(
    rows: Sequence[Sequence[Image.Image | None]],
    column_titles: Sequence[str],
    row_titles: Sequence[str],
    cell: int,
    gap: int = 6,
) -> Image.Image:
    """Cells in a table with a title row and a title above each row; None leaves a cell blank."""
    font = _font(TEXT_SIZE + 1)
    title_height = TEXT_SIZE + 8
    columns = len(column_titles)
    width = columns * (cell + gap) + gap
    height = title_height + len(rows) * (cell + title_height + gap) + gap
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(column_titles):
        draw.text((gap + column * (cell + gap), 4), title, fill=(20, 20, 20), font=font)
    for row_number, (cells, row_title) in enumerate(zip(rows, row_titles, strict=True)):
        top = title_height + row_number * (cell + title_height + gap)
        draw.text((gap, top + 3), row_title, fill=(90, 90, 90), font=_font(TEXT_SIZE - 1))
        for column, image in enumerate(cells):
            if image is not None:
                sheet.paste(image, (gap + column * (cell + gap), top + title_height))
    return sheet
