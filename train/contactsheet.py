"""The contact sheet: eval images with their ground truth and detections, worst first.

Ground truth is drawn as thick green outlines named above the box; detections at or over the
score threshold as thin outlines in their class's colour, named with their score below the
box's top edge; a banner under each picture counts what it shows (found, missed, false) and
a legend heads the sheet. The pictures with the most errors (missed plus false boxes) come
first: those are what a person needs to see. Pure PIL; boxes are normalised
(ymin, xmin, ymax, xmax).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from train.evalcurves import ImageResult, image_errors

TILE = 320
BANNER = 18
LEGEND = 22
COLUMNS = 4
MAX_BOXES = 20  # detections drawn per picture
TRUTH = (40, 170, 60)
PALETTE = ((220, 40, 40), (40, 90, 220), (230, 140, 0), (160, 40, 200), (0, 150, 160))


@dataclass(frozen=True)
class Tile:
    """One picture: its pixels and a result whose boxes are normalised to it."""

    image: np.ndarray
    result: ImageResult

    def errors(self, score: float) -> tuple[int, int]:  # noqa: D102
        return image_errors(self.result, score)


def normalised(result: ImageResult, height: int, width: int) -> ImageResult:
    """A result in pixels of a height x width image, with boxes divided down to [0, 1]."""
    scale = np.array([height, width, height, width], np.float64)
    return ImageResult(
        result.key,
        result.gt_boxes / scale,
        result.gt_classes,
        result.boxes / scale,
        result.scores,
        result.classes,
    )


def worst_first(tiles: list[Tile], score: float, count: int) -> list[Tile]:
    """The `count` tiles with the most errors at `score`, ties in their original order."""
    order = sorted(range(len(tiles)), key=lambda i: (-sum(tiles[i].errors(score)), i))
    return [tiles[i] for i in order[:count]]


def _colour(cls: int) -> tuple[int, int, int]:
    return PALETTE[(cls - 1) % len(PALETTE)]


def _name(names: list[str], cls: int) -> str:
    return names[cls - 1] if 0 < cls <= len(names) else f"class_{cls}"


def _legend(draw, width: int, names: list[str], score: float) -> None:
    x = 6
    draw.rectangle([x, 5, x + 16, 16], outline=TRUTH, width=3)
    draw.text((x + 22, 5), "ground truth", fill="black")
    x += 120
    for cls, name in enumerate(names[: len(PALETTE)], start=1):
        draw.rectangle([x, 5, x + 16, 16], outline=_colour(cls), width=1)
        draw.text((x + 22, 5), name, fill="black")
        x += 30 + 7 * len(name)
    draw.text((max(x, width - 260), 5), f"detections with score >= {score:.2f}", fill="black")


def _tile(draw, tile: Tile, x0: int, y0: int, names: list[str], score: float) -> None:
    result = tile.result
    for box, cls in zip(result.gt_boxes, result.gt_classes, strict=True):
        ymin, xmin, ymax, xmax = (float(v) * TILE for v in box)
        draw.rectangle([x0 + xmin, y0 + ymin, x0 + xmax, y0 + ymax], outline=TRUTH, width=3)
        draw.text((x0 + xmin + 2, y0 + max(ymin - 12, 0)), _name(names, int(cls)), fill=TRUTH)
    order = np.argsort(-result.scores, kind="stable")
    shown = 0
    for i in order:
        if result.scores[i] < score or shown >= MAX_BOXES:
            break
        ymin, xmin, ymax, xmax = (float(v) * TILE for v in result.boxes[i])
        colour = _colour(int(result.classes[i]))
        draw.rectangle([x0 + xmin, y0 + ymin, x0 + xmax, y0 + ymax], outline=colour, width=1)
        label = f"{_name(names, int(result.classes[i]))} {result.scores[i]:.2f}"
        draw.text((x0 + xmin + 2, y0 + ymin + 2), label, fill=colour)
        shown += 1
    missed, false = tile.errors(score)
    found = len(result.gt_classes) - missed
    best = f", best {result.scores[order[0]]:.2f}" if len(order) else ", no detections"
    banner = f"found {found}/{len(result.gt_classes)}  missed {missed}  false {false}{best}"
    draw.text((x0 + 4, y0 + TILE + 3), banner, fill="black" if missed + false == 0 else "red")


def draw(tiles: list[Tile], names: list[str], score: float, path: str) -> str:
    """Draws the tiles (in the order given) under a legend; writes a PNG at `path`."""
    from PIL import Image, ImageDraw

    columns = max(1, min(COLUMNS, len(tiles)))
    rows = max(1, (len(tiles) + columns - 1) // columns)
    width = max(columns * TILE, 640)
    sheet = Image.new("RGB", (width, LEGEND + rows * (TILE + BANNER)), "white")
    canvas = ImageDraw.Draw(sheet)
    _legend(canvas, width, names, score)
    for n, tile in enumerate(tiles):
        x0, y0 = (n % columns) * TILE, LEGEND + (n // columns) * (TILE + BANNER)
        sheet.paste(Image.fromarray(tile.image).convert("RGB").resize((TILE, TILE)), (x0, y0))
        _tile(canvas, tile, x0, y0, names, score)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sheet.save(path)
    return path
