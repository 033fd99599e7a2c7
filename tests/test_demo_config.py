"""The embedded demo config is the zoo model, and its stand-in matches the real zoo checkpoint."""

from __future__ import annotations

import os

import pytest

from tests.conftest import DEMO_CONFIG
from train.pipeline import configfile

ZOO = "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"


def test_demo_config_equals_the_zoo_config(shared_fixtures):
    ours = configfile.load(DEMO_CONFIG).proto
    zoo = configfile.load(os.path.join(shared_fixtures, "zoo_tf2", f"{ZOO}.config")).proto
    assert ours == zoo


def test_demo_config_is_in_zoo_state():
    config = configfile.load(DEMO_CONFIG).proto
    assert config.model.ssd.num_classes == 90
    assert config.train_config.fine_tune_checkpoint_type == "classification"
    assert "PATH_TO_BE_CONFIGURED" in config.train_input_reader.label_map_path


def test_standin_has_the_real_zoo_checkpoint_variables(shared_fixtures, demo_assets):
    import tensorflow as tf

    real = dict(
        tf.train.list_variables(
            os.path.join(shared_fixtures, "zoo_checkpoints", ZOO, "checkpoint", "ckpt-0")
        )
    )
    standin = dict(tf.train.list_variables(demo_assets["prefix"]))
    model = {n: s for n, s in real.items() if n.startswith("model/")}
    assert len(model) == 384
    assert {n: s for n, s in standin.items() if n.startswith("model/")} == model


def test_batch_norm_decay_is_set_in_both_places_and_nowhere_else(tmp_path):
    """The learnable stand-in's one config edit (train.demo.prepare; test_demo.py runs it)."""
    from train.tf import standin

    zoo = configfile.load(DEMO_CONFIG).proto
    ours = configfile.load(DEMO_CONFIG).proto
    assert standin.set_batch_norm_decay(ours, 0.9) == 2
    box_predictor = ours.model.ssd.box_predictor.weight_shared_convolutional_box_predictor
    decays = [
        ours.model.ssd.feature_extractor.conv_hyperparams.batch_norm.decay,
        box_predictor.conv_hyperparams.batch_norm.decay,
    ]
    assert decays == pytest.approx([0.9, 0.9])
    assert ours != zoo
    assert standin.set_batch_norm_decay(ours, 0.997) == 2  # the zoo's value, both places
    assert ours == zoo


def test_messages_walks_every_nested_message_with_its_path():
    from train.pipeline import fields

    config = configfile.load(DEMO_CONFIG).proto
    found = dict(fields.messages(config))
    assert found[""] is config
    assert found["model.ssd.box_predictor"] is config.model.ssd.box_predictor
    options = config.train_config.data_augmentation_options
    assert found["train_config.data_augmentation_options[1]"] is options[1]
    batch_norms = sorted(p for p, m in found.items() if m.DESCRIPTOR.name == "BatchNorm")
    assert batch_norms == [
        "model.ssd.box_predictor.weight_shared_convolutional_box_predictor.conv_hyperparams"
        ".batch_norm",
        "model.ssd.feature_extractor.conv_hyperparams.batch_norm",
    ]


def test_the_demos_shapes_are_no_smaller_than_the_smallest_anchor_at_its_input_size():
    """At the stand-in's 192 px, the zoo's 1/8-wide shapes (24 px) fell under the 32 px anchor.

    The anchor and the resize come from the config as the run's training-data plot reads them
    (train.boxstats), the shapes from the generator the demo calls, so a change to either
    that breaks the fit fails here.
    """
    import numpy as np

    from train import boxstats
    from train.demo import __main__ as demo
    from train.tf import synthetic

    config = configfile.load(DEMO_CONFIG).proto
    resizer = config.model.ssd.image_resizer.fixed_shape_resizer
    resizer.height = resizer.width = demo.STANDIN_IMAGE_SIZE  # as the stand-in's config
    seen = boxstats.geometry(config)
    assert seen.smallest_anchor == 32
    vertical, horizontal = seen.scale(320, 320)

    def smallest_side(boxes) -> float:  # in model-input pixels
        return min(
            min((x1 - x0) * horizontal, (y1 - y0) * vertical) * 320 for x0, y0, x1, y1 in boxes
        )

    rng = np.random.default_rng(0)
    demos = [synthetic.make_image(rng, 320, smallest=demo.SMALLEST_SHAPE)[1] for _ in range(64)]
    assert min(smallest_side(b) for b in demos) >= seen.smallest_anchor
    # The generator's default (the tests' inert assets) still draws the zoo-like small shapes.
    zoo_like = [synthetic.make_image(rng, 320)[1] for _ in range(64)]
    assert min(smallest_side(b) for b in zoo_like) < seen.smallest_anchor
