"""SIGTERM / SIGUSR2 during training: the current step is saved and the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args, render_in_chromium, zero_learning_rate_config
from train import errors

# Far more steps than any machine trains before the signal: the signal always arrives while
# training runs, however fast the machine (the run is stopped, never finished, in this test).
STEPS = 1_000_000


def _argv(assets, config, model_dir):
    return [
        sys.executable,
        *demo_driver_args(
            assets,
            model_dir,
            f"--num_train_steps={STEPS}",
            "--batch_size=1",
            "--checkpoint_every_n=100000",  # no periodic save: only the signal's
            "--num_steps_per_iteration=1",
            "--log_every_s=1",
            config=config,
        ),
    ]


def _step(tf, prefix) -> int:
    return int(tf.train.load_variable(prefix, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def _run_until_signalled(argv, model_dir, after_step: int, stop_signal):
    """Starts the driver, sends `stop_signal` once step `after_step` is logged; its stderr."""
    from train.launch.progress import EventTail

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail, seen, deadline = EventTail(str(model_dir / "train")), 0, time.monotonic() + 400
    while seen < after_step:
        assert driver.poll() is None, driver.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, f"training never reached step {after_step}"
        time.sleep(0.5)
        seen = max([seen] + [record.step for record in tail.poll()])
    driver.send_signal(stop_signal)
    _, stderr = driver.communicate(timeout=300)
    stderr = stderr.decode()
    assert driver.returncode == errors.EXIT_INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    return seen, stderr


@pytest.mark.slow
def test_stop_signals_save_the_current_step_and_the_same_command_resumes(demo_assets, tmp_path):
    import numpy as np
    import tensorflow as tf

    # Learning rate 0: weights never change, so the resumed weights can be told apart from a
    # fresh start (the class head is not in the fine-tune restore: a new process would draw
    # another random one).
    config = zero_learning_rate_config(DEMO_CONFIG, str(tmp_path / "lr0.config"))
    model_dir = tmp_path / "m"
    argv = _argv(demo_assets, config, model_dir)

    seen, stderr = _run_until_signalled(argv, model_dir, 5, signal.SIGTERM)
    first = tf.train.latest_checkpoint(str(model_dir))
    saved = _step(tf, first)
    assert seen <= saved < STEPS  # nothing before the signal was lost
    assert f"stopped by SIGTERM: saved {first} at step {saved}" in stderr

    # The same command resumes from that step; Slurm's preemption warning stops it again.
    seen, stderr = _run_until_signalled(argv, model_dir, saved + 2, signal.SIGUSR2)
    assert f"training: {STEPS - saved} steps from step {saved}" in stderr
    second = tf.train.latest_checkpoint(str(model_dir))
    assert second != first and seen <= _step(tf, second) < STEPS
    assert f"stopped by SIGUSR2: saved {second} at step {_step(tf, second)}" in stderr
    head = [
        n
        for n, _ in tf.train.list_variables(first)
        if "class_predictions_with_background" in n and "kernel" in n and "OPTIMIZER" not in n
    ][0]
    # The fine-tune restore of the second run did not replace the resumed weights.
    assert np.array_equal(tf.train.load_variable(second, head), tf.train.load_variable(first, head))

    # The stopped run has its page (written as it stopped); rebuilt, it draws the training
    # curves from the event files, and it reads in a browser without a request out.
    page = model_dir / "report.html"
    assert page.is_file()
    assert '<b class="bad">stopped</b>' in page.read_text()
    rebuilt = run_python(["-m", "train.report", str(model_dir)], {"TF_CPP_MIN_LOG_LEVEL": None})
    assert rebuilt.returncode == 0 and f"report: {page}" in rebuilt.stdout, rebuilt.stderr
    # Its own line: neither TensorFlow's C++ banner nor a deprecation warning.
    assert "cpu_feature_guard" not in rebuilt.stderr and "deprecat" not in rebuilt.stderr
    seen = render_in_chromium(str(page))
    assert seen["errors"] == [] and all(u.startswith(("file:", "data:")) for u in seen["requests"])
    loaded = {alt: width for alt, complete, width in seen["images"] if complete}
    assert loaded["training curves"] > 0
