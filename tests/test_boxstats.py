"""What the model sees of the training boxes: its input scale, its smallest anchor (known
configs), and the data plot on known boxes."""

from __future__ import annotations

import os

import pytest

from tests.conftest import DEMO_CONFIG
from train import boxstats, plots
from train.pipeline import configfile


def test_the_demo_configs_geometry():
    found = boxstats.geometry(configfile.load(DEMO_CONFIG).proto)
    # multiscale_anchor_generator: anchor_scale 4 at min_level 3 (stride 8): 32 px
    assert (found.resizer, found.size, found.smallest_anchor) == ("fixed", (320, 320), 32.0)
    assert found.aspect_ratios == (1.0, 2.0, 0.5)
    assert found.scale(640, 480) == (0.5, 320 / 480)


@pytest.mark.parametrize(
    "name, smallest, resizer",
    [
        # ssd_anchor_generator: the lowest layer's 0.1 of its 300 px side (fixed_shape_resizer)
        ("ssd_mobilenet_v2_320x320_coco17_tpu-8.config", 30.0, "fixed"),
        # grid_anchor_generator: scale 0.25 of the 256 px base anchor
        ("faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", 64.0, "keep_aspect"),
        ("centernet_resnet50_v1_fpn_512x512_kpts_coco17_tpu-8.config", None, "keep_aspect"),
    ],
)
def test_zoo_geometries(shared_fixtures, name, smallest, resizer):
    config = configfile.load(os.path.join(shared_fixtures, "zoo_tf2", name)).proto
    found = boxstats.geometry(config)
    assert (
        found.smallest_anchor == pytest.approx(smallest)
        if smallest
        else found.smallest_anchor is None
    )
    assert found.resizer == resizer
    if resizer == "keep_aspect":  # min and max dimension: the long side capped
        assert found.scale(1280, 960) == (found.size[1] / 1280,) * 2


def test_the_data_plot_counts_and_flags_boxes_too_small_for_the_anchors(tmp_path):
    geometry = boxstats.geometry(configfile.load(DEMO_CONFIG).proto)
    boxes = [("cat", 40, 30), ("cat", 10, 12), ("dog", 15.9, 4), ("dog", 16, 16), ("dog", 200, 90)]
    found = plots.training_data(boxes, geometry, str(tmp_path / "data.png"))
    assert found["per_class"] == {"cat": 2, "dog": 3}
    # under half the 32 px anchor on both sides: (10, 12) and (15.9, 4); 16 px is not
    assert (found["too_small"], found["too_small_below_px"]) == (2, 16.0)
    assert os.path.getsize(tmp_path / "data.png") > 0
