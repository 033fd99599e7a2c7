"""End to end through the CLI: real train_loop, real checkpoints, real TensorBoard events."""

from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args
from train import errors

pytestmark = [pytest.mark.slow, pytest.mark.stack]
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _scalars(model_dir, tag):
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    values = {}
    for path in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tensor_util.make_ndarray(value.tensor))
    return values


@pytest.fixture(scope="module")
def trained(demo_assets, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("e2e") / "model"
    before = _digest(DEMO_CONFIG)
    args = demo_driver_args(
        demo_assets, model_dir, "--batch_size=2", "--num_train_steps=3", "--checkpoint_every_n=2"
    )
    result = run_python(args)
    return {"dir": str(model_dir), "result": result, "before": before, "args": args}


def test_run_succeeds_and_prints_progress(trained):
    result = trained["result"]
    assert result.returncode == errors.EXIT_OK, result.stderr[-3000:]
    assert "step 3/3  loss " in result.stderr
    assert "done: checkpoints in" in result.stderr


def test_final_checkpoint_is_at_num_train_steps(trained):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(trained["dir"])
    assert int(tf.train.load_variable(latest, "step" + _VALUE)) == 3  # 3 % 2 != 0: saved anyway


def test_tensorboard_has_total_loss(trained):
    losses = _scalars(trained["dir"], "Loss/total_loss")
    assert sorted(losses) == [1, 2, 3] and all(np.isfinite(v) for v in losses.values())


def test_resolved_config_written_and_input_untouched(trained):
    from train.pipeline import configfile

    resolved = configfile.load(os.path.join(trained["dir"], "pipeline.config")).proto
    assert resolved.model.ssd.num_classes == 3
    assert resolved.train_config.fine_tune_checkpoint_type == "detection"
    assert resolved.train_config.fine_tune_checkpoint.endswith("checkpoint/ckpt-0")
    assert os.path.exists(os.path.join(trained["dir"], "pipeline.diff"))
    assert _digest(DEMO_CONFIG) == trained["before"]


def test_fine_tune_checkpoint_was_really_restored(trained, demo_assets):
    import tensorflow as tf

    # ckpt-1 is saved at step 0, right after the fine-tune restore and before any update.
    step0 = os.path.join(trained["dir"], "ckpt-1")
    assert int(tf.train.load_variable(step0, "step" + _VALUE)) == 0
    zoo = tf.train.load_checkpoint(demo_assets["prefix"])
    ours = tf.train.load_checkpoint(step0)
    backbone = [
        n
        for n, _ in tf.train.list_variables(demo_assets["prefix"])
        if n.startswith("model/_feature_extractor/") and n.endswith(_VALUE)
    ]
    assert len(backbone) == 290  # MobileNetV2 + FPN
    for name in backbone:
        np.testing.assert_array_equal(ours.get_tensor(name), zoo.get_tensor(name), err_msg=name)
    head = (
        "model/_box_predictor/_prediction_heads/class_predictions_with_background/"
        "_class_predictor_layers/0/bias" + _VALUE
    )
    assert ours.get_tensor(head).shape == (6 * 4,) and zoo.get_tensor(head).shape == (6 * 91,)


def test_the_step_0_checkpoint_has_the_od_apis_layout_and_later_ones_the_slots(trained):
    """The child creates the optimizer's slots before the first step (tracing.create_slots),
    but after the step-0 save: a step-0 checkpoint with slots made the OD API's evaluator read
    it again at its next restore (train/tf/child.py). Later checkpoints hold them, as always."""
    import tensorflow as tf

    def slots(prefix):
        return [n for n, _ in tf.train.list_variables(prefix) if ".OPTIMIZER_SLOT/" in n]

    assert slots(os.path.join(trained["dir"], "ckpt-1")) == []  # step 0
    final = slots(tf.train.latest_checkpoint(trained["dir"]))
    assert final and all(n.endswith("/optimizer/momentum" + _VALUE) for n in final)


def test_rerun_into_finished_model_dir_is_refused(trained):
    result = run_python(trained["args"])
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert "MODEL_DIR.finished" in result.stderr
