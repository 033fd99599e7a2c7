"""Out of memory: a training child that runs out of host memory ends with TRAIN.oom, the batch
that failed and one that should fit. Real limits, no mocks: an address-space limit
(`ulimit -v`, what a batch system's memory limit does) and, as root, a memory cgroup whose
limit makes the kernel's OOM killer SIGKILL the child."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_python, skip_unless_required
from tests.helpers import (
    demo_driver_args,
    start_driver,
    step_by_step_args,
    training_child,
    wait_for_checkpoint,
)
from train import errors

pytestmark = [pytest.mark.slow]

# The demo child peaks at ~3.3 GB of address space at batch 2; batch 48 needs several more.
_ADDRESS_SPACE_KB = 4_400_000


def _driver(demo_assets, tmp_path, prefix: str, batch: int):
    args = demo_driver_args(
        demo_assets,
        tmp_path / "model",
        "--num_train_steps=3",
        f"--batch_size={batch}",
        f"--report_json={tmp_path / 'report.json'}",
    )
    command = f"{prefix} exec {shlex.quote(sys.executable)} {' '.join(map(shlex.quote, args))}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


def test_an_address_space_limit_ends_in_train_oom(demo_assets, tmp_path):
    result = _driver(demo_assets, tmp_path, f"ulimit -v {_ADDRESS_SPACE_KB};", 48)
    assert result.returncode == errors.EXIT_TRAINING, result.stderr[-3000:]
    assert "error: TRAIN.oom: training at batch 48 ran out of memory" in result.stderr
    assert "ran out of host memory" in result.stderr
    assert "fix: pass --batch_size 24" in result.stderr and "Traceback" not in result.stderr
    with open(tmp_path / "report.json") as f:
        document = json.load(f)
    assert "TRAIN.oom" in [f["code"] for f in document["findings"]]


def test_the_kernels_oom_killer_ends_in_train_oom(demo_assets, tmp_path):
    """A memory cgroup (v1) of 2 GB: TensorFlow's import fits, batch 48 does not."""
    base = "/sys/fs/cgroup/memory"
    group = os.path.join(base, f"tfod-oom-{os.getpid()}")
    try:
        os.mkdir(group)
    except OSError as e:
        skip_unless_required(f"no writable memory cgroup here ({e}): needs root and cgroup v1")
    try:
        with open(os.path.join(group, "memory.limit_in_bytes"), "w") as f:
            f.write(str(2 * 1024**3))
        swap = os.path.join(group, "memory.memsw.limit_in_bytes")
        if os.path.exists(swap):
            with open(swap, "w") as f:
                f.write(str(2 * 1024**3))
        prefix = f"echo $$ > {shlex.quote(os.path.join(group, 'cgroup.procs'))};"
        result = _driver(demo_assets, tmp_path, prefix, 48)
    finally:
        os.rmdir(group)  # its processes (the driver and children) have all ended
    assert result.returncode == errors.EXIT_TRAINING, result.stderr[-3000:]
    assert "killed (SIGKILL) without a stop asked for" in result.stderr
    assert "TRAIN.oom: training at batch 48" in result.stderr


def test_someone_elses_kill_9_is_a_stop_not_out_of_memory(demo_assets, tmp_path):
    """A real kill -9 of the training child: no OOM claim, exit 5, the same command resumes."""
    import signal

    model_dir = tmp_path / "model"
    args = step_by_step_args(demo_assets, model_dir, tmp_path, steps=80, checkpoint_every=5)
    log = tmp_path / "driver.log"
    driver = start_driver(args, log)
    wait_for_checkpoint(driver, model_dir, log)
    child = training_child(model_dir)
    os.kill(child, signal.SIGKILL)
    driver.wait(timeout=120)
    stderr = log.read_text()
    assert driver.returncode == errors.EXIT_INTERRUPTED, stderr[-3000:]
    assert "TRAIN.oom" not in stderr and "out of memory" not in stderr
    assert "stopped by SIGKILL: killed by SIGKILL from outside the run (not for memory" in stderr
    assert "rerun the same command to resume" in stderr
    again = run_python(args)
    assert again.returncode == errors.EXIT_OK, again.stderr[-3000:]
    assert "steps from step 0" not in again.stderr  # it resumed from a saved step
    assert "ckpt-* at step 80" in again.stderr
