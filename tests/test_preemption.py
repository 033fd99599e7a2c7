"""SIGTERM / SIGUSR2 during training: the current step is saved and the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import DEMO_CONFIG
from tests.helpers import demo_driver_args, zero_learning_rate_config
from train import errors

STEPS = 40


def _argv(assets, config, model_dir):
    return [
        sys.executable,
        *demo_driver_args(
            assets,
            model_dir,
            f"--num_train_steps={STEPS}",
            "--batch_size=1",
            "--checkpoint_every_n=1000",  # no periodic save: only the signal's
            "--num_steps_per_iteration=1",
            "--log_every_s=1",
            config=config,
        ),
    ]


def _step(tf, prefix) -> int:
    return int(tf.train.load_variable(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGUSR2])
def test_stop_signal_saves_the_current_step_and_the_same_command_resumes(
    demo_assets, tmp_path, stop_signal
):
    import numpy as np
    import tensorflow as tf

    from train.launch.progress import EventTail

    # Learning rate 0: weights never change, so the resumed weights can be told apart from a
    # fresh start (the class head is not in the fine-tune restore: a new process would draw
    # another random one).
    config = zero_learning_rate_config(DEMO_CONFIG, str(tmp_path / "lr0.config"))
    model_dir = tmp_path / "m"
    argv = _argv(demo_assets, config, model_dir)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail, seen, deadline = EventTail(str(model_dir / "train")), 0, time.monotonic() + 400
    while seen < 5:
        assert driver.poll() is None, driver.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "training never reached step 5"
        time.sleep(0.5)
        seen = max([seen] + [record.step for record in tail.poll()])
    driver.send_signal(stop_signal)
    _, stderr = driver.communicate(timeout=300)
    stderr = stderr.decode()
    assert driver.returncode == errors.EXIT_INTERRUPTED, stderr[-3000:]
    interrupted = tf.train.latest_checkpoint(str(model_dir))
    saved = _step(tf, interrupted)
    assert seen <= saved < STEPS  # nothing before the signal was lost
    name = signal.Signals(stop_signal).name
    assert f"stopped by {name}: saved {interrupted} at step {saved}" in stderr
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    head = [
        n
        for n, _ in tf.train.list_variables(interrupted)
        if "class_predictions_with_background" in n and "kernel" in n and "OPTIMIZER" not in n
    ][0]

    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"training: {STEPS - saved} steps from step {saved}" in resumed.stderr
    final = tf.train.latest_checkpoint(str(model_dir))
    assert _step(tf, final) == STEPS
    # The fine-tune restore of the second run did not replace the resumed weights.
    assert np.array_equal(
        tf.train.load_variable(final, head), tf.train.load_variable(interrupted, head)
    )
