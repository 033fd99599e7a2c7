"""The contact sheet on known pictures: worst first, ground truth and detections told apart."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.test_evalcurves import _known
from train import contactsheet
from train.contactsheet import LEGEND, PALETTE, TILE, TRUTH, Tile


def _tiles() -> list[Tile]:
    """The hand-made set (boxes in 100-pixel pictures), as normalised tiles on grey."""
    grey = np.full((100, 100, 3), 128, np.uint8)
    return [Tile(grey, contactsheet.normalised(r, 100, 100)) for r in _known().images]


def test_the_pictures_with_most_errors_come_first():
    tiles = _tiles()
    # errors at 0.5 (missed, false): a (0, 1), b (1, 1), c (1, 0)
    assert [t.result.key for t in contactsheet.worst_first(tiles, 0.5, 3)] == ["b", "a", "c"]
    assert [t.result.key for t in contactsheet.worst_first(tiles, 0.5, 1)] == ["b"]
    # at 0.2 b's cat at 0.3 is found: b (0, 1), a (0, 1), c (1, 0): ties keep their order
    assert [t.result.key for t in contactsheet.worst_first(tiles, 0.2, 3)] == ["a", "b", "c"]


def test_ground_truth_and_detections_are_drawn_in_their_colours(tmp_path):
    path = str(tmp_path / "sheet.png")
    tiles = contactsheet.worst_first(_tiles(), 0.5, 3)  # b, a, c
    contactsheet.draw(tiles, ["cat", "dog"], 0.5, path)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape == (
        LEGEND + TILE + contactsheet.BANNER,
        max(3 * TILE, 640),
        3,
    )

    def pixel(tile: int, y: float, x: float):
        return tuple(sheet[LEGEND + int(y * TILE / 100), tile * TILE + int(x * TILE / 100)])

    # b: its cat (ground truth A = 0..10) in green; the false cat at C (50..60, 0.7) in the
    # cat colour; the 0.3 cat (under 0.5) not drawn: A's box edge stays green.
    assert pixel(0, 5, 0.5) == TRUTH
    assert pixel(0, 55, 50) == PALETTE[0]
    # a: the dog's truth at B (20..30) is green under the dog detection's thinner outline;
    # the inside of a box is the picture's grey
    assert pixel(1, 25, 25) == (128, 128, 128)
    # c: nothing detected, the missed dog's truth drawn
    assert pixel(2, 5, 0.5) == TRUTH
