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

from tests.conftest import ROOT, skip_unless_required
from tests.helpers import demo_driver_args
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
    import glob
    import signal
    import time

    from tests.helpers import small_demo_config

    model_dir = tmp_path / "model"
    args = demo_driver_args(
        demo_assets,
        model_dir,
        "--num_train_steps=80",
        "--batch_size=1",
        "--checkpoint_every_n=5",
        "--num_steps_per_iteration=1",
        config=small_demo_config(tmp_path),
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = tmp_path / "driver.log"
    with open(log, "w") as out:  # a file, not a pipe: nobody reads it while the run goes
        driver = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stderr=out)
    spec = str(model_dir / "train_spec.json")
    deadline = time.monotonic() + 300
    while not glob.glob(str(model_dir / "ckpt-2.index")) and time.monotonic() < deadline:
        assert driver.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    child_pid = subprocess.run(["pgrep", "-f", f"train.tf.child {spec}"], capture_output=True)
    (child,) = [int(pid) for pid in child_pid.stdout.split()]
    os.kill(child, signal.SIGKILL)
    driver.wait(timeout=120)
    stderr = log.read_text()
    assert driver.returncode == errors.EXIT_INTERRUPTED, stderr[-3000:]
    assert "TRAIN.oom" not in stderr and "out of memory" not in stderr
    assert "stopped by SIGKILL: killed by SIGKILL from outside the run (not for memory" in stderr
    assert "rerun the same command to resume" in stderr
    again = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == errors.EXIT_OK, again.stderr[-3000:]
    assert "steps from step 0" not in again.stderr  # it resumed from a saved step
    assert "ckpt-* at step 80" in again.stderr
