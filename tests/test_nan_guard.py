"""The NaN guard: an absurd learning rate stops the run at the first non-finite loss, with
TRAIN.nan, exit 4, and the newest checkpoint holding the last good (finite) weights."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args
from train import errors

pytestmark = [pytest.mark.slow]


def _absurd_rate_config(tmp_path) -> str:
    text = open(DEMO_CONFIG).read()
    for field in ("learning_rate_base", "warmup_learning_rate"):
        start = text.index(f"{field}: ")
        end = text.index("\n", start)
        text = text[:start] + f"{field}: 5000000.0" + text[end:]
    path = tmp_path / "absurd.config"
    path.write_text(text)
    return str(path)


def _absurd_run(demo_assets, root, seed: int = 3) -> dict:
    """20 steps at the absurd rate, a checkpoint each step, into root/model (seeded: which
    value goes non-finite first depends on the batches, which the unseeded shuffle varies)."""
    model_dir = root / "model"
    report = root / "report.json"
    result = run_python(
        demo_driver_args(
            demo_assets,
            model_dir,
            "--num_train_steps=20",
            "--checkpoint_every_n=1",
            "--batch_size=2",
            f"--seed={seed}",
            f"--report_json={report}",
            config=_absurd_rate_config(root),
        )
    )
    return {"dir": str(model_dir), "result": result, "report": str(report)}


@pytest.fixture(scope="module")
def nan_run(demo_assets, tmp_path_factory):
    return _absurd_run(demo_assets, tmp_path_factory.mktemp("nan"))


def test_the_run_stops_with_train_nan_and_exit_4(nan_run):
    result = nan_run["result"]
    assert result.returncode == errors.EXIT_TRAINING, result.stderr[-3000:]
    assert "error: TRAIN.nan: training stopped: " in result.stderr
    assert "the last good weights" in result.stderr
    assert "likely causes, most likely first: a learning rate too high for batch 2" in result.stderr
    assert "--scan_records all" in result.stderr and "Traceback" not in result.stderr
    with open(nan_run["report"]) as f:
        document = json.load(f)
    assert document["outcome"]["exit_code"] == errors.EXIT_TRAINING
    assert "TRAIN.nan" in [f["code"] for f in document["findings"]]
    assert "step 20/20" not in result.stderr  # it stopped early


def _non_finite(path: str) -> list[str]:
    """Every floating-point tensor of the checkpoint at `path` that holds NaN or Inf."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    return [
        name
        for name in reader.get_variable_to_shape_map()
        if isinstance(value := reader.get_tensor(name), np.ndarray)
        and value.dtype.kind == "f"
        and not np.isfinite(value).all()
    ]


def test_every_checkpoint_holds_only_finite_values(nan_run):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(nan_run["dir"])
    assert latest and latest in nan_run["result"].stderr  # the one the message names
    assert f"{latest} (step " in nan_run["result"].stderr
    assert "every value finite" in nan_run["result"].stderr
    saved = sorted(glob.glob(os.path.join(nan_run["dir"], "ckpt-*.index")))
    assert saved
    for index in saved:  # every variable of every checkpoint read back
        assert _non_finite(index[: -len(".index")]) == [], index
    step = int(tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 0 < step < 20
    # nothing was saved after the poisoned step: the checkpoints are steps 0..step, one each
    assert len(saved) <= step + 1


def test_a_state_that_is_not_finite_is_never_saved(tmp_path):
    """The save check itself, on a state whose losses would be finite: a batch-norm layer
    whose moving variance overflowed (the case the loss and gradient checks cannot see)."""
    import tensorflow as tf

    from train.tf import child, guards

    layer = tf.keras.layers.BatchNormalization()
    layer.build((None, 4))
    checkpoint = tf.train.Checkpoint(step=tf.Variable(7, dtype=tf.int64), model=layer)
    created: list = []
    with child._recording_checkpoint_managers(tf, created, child.SignalGuard()):
        manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=5)
        first = manager.save()
        layer.moving_variance.assign([1.0, float("inf"), 1.0, 1.0])
        with pytest.raises(guards.NonFiniteState) as raised:
            manager.save()
    assert raised.value.kind == "Inf" and raised.value.step == 7
    assert raised.value.names == [layer.moving_variance.name]
    assert manager.latest_checkpoint == first and len(glob.glob(f"{tmp_path}/*.index")) == 1
    line = guards.nan_line(raised.value, 7, first)
    assert line.startswith("1 variable(s) became Inf by step 7 while the losses and gradients")
    assert line.endswith(f"{first} (step 7, the last good weights, every value finite)")
    # an optimizer's slots are saved too (a legacy Keras optimizer's are no graph children),
    # and so is a model whose sub-models are not built yet (train_loop's step-0 save)
    layer.moving_variance.assign([1.0, 1.0, 1.0, 1.0])
    optimizer = tf.keras.optimizers.legacy.SGD(0.1, momentum=0.9)
    optimizer.apply_gradients([(tf.ones_like(layer.gamma), layer.gamma)])
    unbuilt = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    checkpoint = tf.train.Checkpoint(
        step=tf.Variable(8, dtype=tf.int64), model=layer, optimizer=optimizer, other=unbuilt
    )
    guards.check_finite_state(tf, checkpoint)  # all finite: no error
    slot = optimizer.get_slot(layer.gamma, "momentum")
    slot.assign(tf.fill(slot.shape, float("nan")))
    with pytest.raises(guards.NonFiniteState) as raised:
        guards.check_finite_state(tf, checkpoint)
    assert raised.value.kind == "NaN" and raised.value.names == [slot.name]


# float32's largest value: a sum of squares past it is Inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# The FPNLite head's class predictor is a separable conv; its pointwise kernel is 1x1x128x24
# (128 channels, 6 anchors x (3 classes + background)).
_KERNEL = "WeightSharedConvolutionalBoxPredictor/WeightSharedConvolutionalClassHead/ClassPredictor"
_KERNEL_SIZE = 128 * 24


def _halving_suffices_config(tmp_path) -> tuple[str, float]:
    """A run that goes Inf at its second step at a rate S, and trains to the end at S / 2.

    Only the class predictor's pointwise kernel trains (N weights), with an L2 regularizer
    (apply_conv_hyperparams_to_heads), by Adam with epsilon ~0: Adam's first update moves each
    weight by the rate times the sign of its gradient, so by exactly S whatever the data. The
    rate is S for step 0 and 0 after. Then the regularization loss sums N squares of ~S: Inf
    when N S^2 > float32's maximum. S is chosen so that N (S / 2)^2 is 0.9 of the maximum
    (finite, with every weight at +-S/2: the bound Adam cannot exceed) while N S^2 is 3.6
    times it (Inf as soon as 28 % of the weights have a non-zero gradient). Returns the config
    and S.
    """
    rate = 2 * 0.95 * (_FLOAT32_MAX / _KERNEL_SIZE) ** 0.5
    text = open(DEMO_CONFIG).read()
    start, end = text.index("  optimizer {"), text.index("    use_moving_average: false")
    optimizer = (
        "  optimizer {\n    adam_optimizer {\n      epsilon: 1e-30\n      learning_rate {\n"
        f"        manual_step_learning_rate {{ initial_learning_rate: {rate!r}\n"
        "          schedule { step: 1 learning_rate: 0.0 } }\n      }\n    }\n"
    )
    text = text[:start] + optimizer + text[end:]
    text = text.replace(
        "weight_shared_convolutional_box_predictor {",
        "weight_shared_convolutional_box_predictor {\n apply_conv_hyperparams_to_heads: true",
    )
    text = text.replace(
        "train_config {",
        f"train_config {{\n  update_trainable_variables: '{_KERNEL}/pointwise_kernel'",
        1,
    )
    path = tmp_path / "halving.config"
    path.write_text(text)
    return str(path), rate


def _halving_run(demo_assets, tmp_path):
    """3 steps with --nan_retries=1 at S: (result, report, model_dir, rate)."""
    config, rate = _halving_suffices_config(tmp_path)
    model_dir, report = tmp_path / "model", tmp_path / "report.json"
    result = run_python(
        demo_driver_args(
            demo_assets,
            model_dir,
            "--num_train_steps=3",
            "--batch_size=2",
            "--nan_retries=1",
            f"--report_json={report}",
            config=config,
        )
    )
    with open(report) as f:
        document = json.load(f)
    return result, document, model_dir, rate


def test_nan_retries_finish_a_run_where_halving_the_rate_suffices(demo_assets, tmp_path):
    import tensorflow as tf

    result, document, model_dir, rate = _halving_run(demo_assets, tmp_path)
    assert result.returncode == errors.EXIT_OK, result.stderr[-3000:]
    assert (
        "TRAIN.nan (retry 1/1 follows): Loss/regularization_loss became Inf in the step after "
        "step 1; that step was not applied" in result.stderr
    )
    assert (
        "nan retry 1/1: continuing from " in result.stderr and "ckpt-* at step 3" in result.stderr
    )
    assert "error: TRAIN.nan" not in result.stderr
    (retry,) = document["nan_retries"]
    assert retry["failed_after_step"] == 1 and retry["changes"][0]["new"] == f"{rate / 2:g}"
    assert "TRAIN.nan" not in [f["code"] for f in document["findings"]]
    # The premise: the kernel has N weights; each moved by at most S / 2, and every value is
    # finite after the three steps.
    reader = tf.train.load_checkpoint(str(model_dir))
    kernel = reader.get_tensor(
        "model/_box_predictor/_prediction_heads/class_predictions_with_background/"
        "_class_predictor_layers/0/pointwise_kernel/.ATTRIBUTES/VARIABLE_VALUE"
    )
    assert kernel.size == _KERNEL_SIZE and np.isfinite(kernel).all()
    assert 0.25 * rate < float(np.abs(kernel).max()) <= 0.5 * rate * 1.0001
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 3


def test_scale_learning_rate_reaches_every_schedule():
    from train.pipeline import configfile, rewrite

    config = configfile.load(DEMO_CONFIG).proto
    manual = config.train_config.optimizer.momentum_optimizer.learning_rate
    manual.ClearField("cosine_decay_learning_rate")
    manual.manual_step_learning_rate.initial_learning_rate = 0.1
    manual.manual_step_learning_rate.schedule.add(step=10, learning_rate=0.01)
    halved, changes = rewrite.scale_learning_rate(config, 0.5, "test")
    schedule = halved.train_config.optimizer.momentum_optimizer.learning_rate
    assert schedule.manual_step_learning_rate.initial_learning_rate == pytest.approx(0.05)
    assert schedule.manual_step_learning_rate.schedule[0].learning_rate == pytest.approx(0.005)
    assert schedule.manual_step_learning_rate.schedule[0].step == 10
    assert [c.path.rsplit(".", 1)[1] for c in changes] == ["initial_learning_rate", "learning_rate"]
    assert manual.manual_step_learning_rate.initial_learning_rate == pytest.approx(0.1)  # a copy
    manual.manual_step_learning_rate.schedule.add(step=20, learning_rate=0.0)
    _, changes = rewrite.scale_learning_rate(config, 0.5, "test")
    assert len(changes) == 2  # a rate of 0 is not a change


def test_the_same_seed_gives_the_same_new_layers():
    """--seed repeats the new layers' initial values, which Keras draws with seeds of its own."""
    import tensorflow as tf

    from train.tf import child

    def new_head() -> np.ndarray:
        layer = tf.keras.layers.Conv2D(
            4, 3, kernel_initializer=tf.keras.initializers.RandomNormal()
        )
        layer.build((None, 8, 8, 2))
        return layer.kernel.numpy()

    child.seed_everything(tf, 3)
    first = new_head()
    child.seed_everything(tf, 3)
    assert np.array_equal(new_head(), first)
    child.seed_everything(tf, 4)
    assert not np.array_equal(new_head(), first)
