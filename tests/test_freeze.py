"""Freezing that works: freeze_variables, update_trainable_variables and --freeze, trained for
real (non-zero learning rate) and checked tensor by tensor in the checkpoints."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import checkpoint_tensors, demo_driver_args
from train import errors

pytestmark = [pytest.mark.slow]

# TF2 names of the demo model's MobileNetV2 backbone layers (Keras application names).
_BACKBONE_PATTERN = "(Conv1|bn_Conv1|expanded_conv|block_|Conv_1)"
_PREDICTOR_PATTERN = "WeightSharedConvolutionalBoxPredictor"


def _config_with(tmp_path, name: str, lines: str) -> str:
    text = open(DEMO_CONFIG).read().replace("train_config {", "train_config {\n" + lines, 1)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def runs(demo_assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("freeze")
    cases = {
        "flag": (DEMO_CONFIG, ["--freeze=backbone"]),
        "regex": (
            _config_with(
                root,
                "freeze.config",
                f"  freeze_variables: '{_BACKBONE_PATTERN}'\n"
                "  freeze_variables: 'FeatureExtractor/MobilenetV2'\n",
            ),
            [],
        ),
        "train_only": (
            _config_with(
                root, "update.config", f"  update_trainable_variables: '{_PREDICTOR_PATTERN}'\n"
            ),
            [],
        ),
    }
    done = {}
    for name, (config, extra) in cases.items():
        model_dir = root / name
        report = root / f"{name}.json"
        result = run_python(
            demo_driver_args(
                demo_assets,
                model_dir,
                "--num_train_steps=3",
                "--batch_size=2",
                f"--report_json={report}",
                *extra,
                config=config,
            )
        )
        done[name] = {"dir": str(model_dir), "result": result, "report": str(report)}
    return done


def _optimized(prefix: str) -> set[str]:
    """Keys of the variables the optimizer trained: it keeps a momentum slot for each."""
    import tensorflow as tf

    marker = "/.OPTIMIZER_SLOT/"
    return {
        key.split(marker)[0] + "/.ATTRIBUTES/VARIABLE_VALUE"
        for key in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
        if marker in key
    }


def _assert_trained(run, start, final, keys):
    """Each variable was trained (has a slot); every kernel and bias moved in 3 steps.

    Batch-norm parameters are data-dependent: on the coarsest feature maps (a few pixels per
    image at batch 2) a scale can get an exactly zero gradient and stay put, frozen or not;
    which ones depends on the shuffled, augmented images (8 of the box tower's 40 in one run,
    12 in another). Most still move, and every one of them has its optimizer slot.
    """
    optimized = _optimized(os.path.join(run["dir"], "ckpt-2"))
    assert set(keys) <= optimized
    moved = {k for k in keys if not np.array_equal(final[k], start[k])}
    batch_norm = [k for k in keys if re.search(r"/(gamma|beta)/\.ATTRIBUTES/", k)]
    weights = [k for k in keys if k not in batch_norm]
    assert weights and set(weights) <= moved, sorted(set(weights) - moved)
    assert len(moved & set(batch_norm)) >= 0.5 * len(batch_norm), sorted(set(batch_norm) - moved)
    return optimized


def _component(key: str) -> str:
    from train.checkpoint import components

    return components.component_of(key)


def _trainable(key: str) -> bool:
    return "moving_mean" not in key and "moving_variance" not in key


def _compare(run, demo_assets):
    """(start, final, fine-tune) tensors of the run's step-0 and final checkpoints."""
    start = checkpoint_tensors(os.path.join(run["dir"], "ckpt-1"))
    final = checkpoint_tensors(os.path.join(run["dir"], "ckpt-2"))
    fine_tune = checkpoint_tensors(demo_assets["prefix"])
    return start, final, fine_tune


@pytest.mark.parametrize("case", ["flag", "regex"])
def test_a_frozen_backbone_stays_the_checkpoints_and_the_rest_trains(runs, demo_assets, case):
    run = runs[case]
    assert run["result"].returncode == 0, run["result"].stderr[-3000:]
    start, final, fine_tune = _compare(run, demo_assets)
    backbone = [k for k in final if _component(k) == "backbone" and _trainable(k)]
    others = [k for k in final if _component(k) != "backbone" and _trainable(k)]
    assert len(backbone) == 156 and len(others) == 76
    for key in backbone:
        np.testing.assert_array_equal(final[key], fine_tune[key], err_msg=key)
    optimized = _assert_trained(run, start, final, others)
    assert not optimized & set(backbone)  # the optimizer never saw the frozen ones
    stderr = run["result"].stderr
    assert "freeze: training 0.3M/2.6M parameters (frozen: backbone 156/156)" in stderr
    with open(run["report"]) as f:
        freeze = json.load(f)["freeze"]
    assert freeze["frozen"] == {"backbone": [156, 156]} and freeze["trained_variables"] == 76


def test_a_pattern_that_matches_nothing_is_warned_about(runs):
    run = runs["regex"]
    stderr = run["result"].stderr
    assert "warning: FREEZE.no_match" in stderr and "'FeatureExtractor/MobilenetV2'" in stderr
    with open(run["report"]) as f:
        document = json.load(f)
    assert document["freeze"]["unmatched"] == ["FeatureExtractor/MobilenetV2"]
    assert "FREEZE.no_match" in [f["code"] for f in document["findings"]]


def test_update_trainable_variables_trains_only_what_it_names(runs, demo_assets):
    run = runs["train_only"]
    assert run["result"].returncode == 0, run["result"].stderr[-3000:]
    start, final, fine_tune = _compare(run, demo_assets)
    extractor = [k for k in final if _component(k) in ("backbone", "neck") and _trainable(k)]
    predictor = [k for k in final if k.startswith("model/_box_predictor/") and _trainable(k)]
    assert len(extractor) == 178 and predictor
    for key in extractor:
        np.testing.assert_array_equal(final[key], fine_tune[key], err_msg=key)
    optimized = _assert_trained(run, start, final, predictor)
    assert not optimized & set(extractor)
    assert "frozen: backbone 156/156, neck 22/22" in run["result"].stderr


def test_freezing_everything_fails_with_its_code(demo_assets, tmp_path):
    config = _config_with(tmp_path, "all.config", "  freeze_variables: '.*'\n")
    result = run_python(
        demo_driver_args(
            demo_assets, tmp_path / "m", "--num_train_steps=2", "--batch_size=2", config=config
        )
    )
    assert result.returncode == errors.EXIT_TRAINING
    assert "FREEZE.everything" in result.stderr and "Traceback" not in result.stderr


def test_bad_freeze_flag_is_a_usage_error(demo_assets, tmp_path):
    result = run_python(demo_driver_args(demo_assets, tmp_path / "m", "--freeze=heads"))
    assert result.returncode == errors.EXIT_USAGE
    assert "--freeze" in result.stderr and "backbone" in result.stderr


def test_the_rule_is_a_pure_decision():
    from train.pipeline import freezing

    class TrainConfig:
        freeze_variables = ["block_", "nothing_here"]
        update_trainable_variables = []

    rule = freezing.rule(TrainConfig, "neck")
    variables = [
        ("block_1_expand/kernel:0", "model/_feature_extractor/classification_backbone/x"),
        (
            "FeatureMaps/top_down/conv/kernel:0",
            "model/_feature_extractor/_fpn_features_generator/y",
        ),
        ("BoxPredictor/kernel:0", "model/_box_predictor/z"),
    ]
    trains, unmatched = freezing.decide(rule, variables)
    assert trains == [False, False, True] and unmatched == ["nothing_here"]
    assert freezing.rule(TrainConfig, "none") == freezing.FreezeRule()
    assert freezing.parse_flag("neck, backbone") == "backbone,neck"
    with pytest.raises(freezing.FreezeError):
        freezing.parse_flag("heads")
