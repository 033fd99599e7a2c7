"""The embedded demo config is the zoo model, and its stand-in matches the real zoo checkpoint."""

from __future__ import annotations

import os

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
