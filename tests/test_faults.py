"""Faults during a run, for real: the driver killed, a second driver on the same model_dir."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import run_python
from tests.helpers import (
    start_driver,
    step_by_step_args,
    training_child,
    wait_for_checkpoint,
    with_flags,
)
from train import errors
from train.launch import claim


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_killed_driver_takes_its_training_along_and_a_second_driver_is_refused(
    demo_assets, tmp_path
):
    """kill -9 of the driver: the child saves and ends; the same command then resumes. A
    second driver while the first runs is refused at once, naming the first."""
    model_dir = tmp_path / "model"
    args = step_by_step_args(demo_assets, model_dir, tmp_path, steps=60, checkpoint_every=5)
    log = tmp_path / "driver.log"
    driver = start_driver(args, log)
    wait_for_checkpoint(driver, model_dir, log)

    second = run_python(args, timeout=120)
    assert second.returncode == errors.EXIT_PREFLIGHT, second.stderr[-3000:]
    assert f"error: RUN.in_use: {model_dir} is in use by another run: pid {driver.pid} on " in (
        second.stderr
    )
    assert "Traceback" not in second.stderr and driver.poll() is None

    child = training_child(model_dir)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    deadline = time.monotonic() + 150
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "the training child outlived its driver"
    with open(model_dir / "logs" / "train.outcome.json") as f:
        outcome = json.load(f)
    assert outcome["status"] == "stopped" and outcome["signal"] == "SIGTERM", outcome
    assert 5 <= outcome["step"] < 60 and outcome["checkpoint"], outcome  # saved where it was

    again = run_python(args)
    assert again.returncode == errors.EXIT_OK, again.stderr[-3000:]
    assert f"taking over the claim of pid {driver.pid} on " in again.stderr
    assert "steps from step 0" not in again.stderr and "ckpt-* at step 60" in again.stderr
    assert not (model_dir / claim.FILE).exists()  # a clean end lets the next run in quietly

    # The newest checkpoint cut short (a crash, a quota): the next run resumes from the one
    # before it, never from the half-read one, and keeps the damaged files.
    from train.checkpoint import bundle, resolve

    newest, before = resolve.checkpoints_in_dir(str(model_dir))[:2]  # the run saved at 60 ...
    step_before = bundle.read_int64(before, "step/.ATTRIBUTES/VARIABLE_VALUE")  # ... and here
    (data,) = glob.glob(newest + ".data-*")
    cut = os.path.getsize(data) - 100
    with open(data, "r+b") as f:
        f.truncate(cut)
    more = [a if not a.startswith("--num_train_steps") else "--num_train_steps=62" for a in args]
    resumed = run_python(more)
    assert resumed.returncode == errors.EXIT_OK, resumed.stderr[-3000:]
    lines = [line for line in resumed.stderr.splitlines() if "MODEL_DIR" in line]
    assert (
        f"  warning MODEL_DIR.damaged: --model_dir {model_dir}: the newest checkpoint "
        f"{os.path.basename(newest)} is "
        f"damaged ({os.path.basename(data)} has {cut} bytes, its index needs "
    ) in resumed.stderr, lines
    resumes = f"the run resumes from {os.path.basename(before)} (step {step_before})"
    assert resumes in resumed.stderr, lines
    assert f"moved the damaged checkpoint(s) to {model_dir / 'damaged'}" in resumed.stderr
    assert f"holds a run at step {step_before};" in resumed.stderr
    assert "ckpt-* at step 62" in resumed.stderr
    kept = model_dir / "damaged" / os.path.basename(data)
    assert kept.stat().st_size == cut  # kept as it was, not deleted


def _holder(pid: int, run: str = "") -> claim.Holder:
    return claim.Holder("host-a", pid, "2026-12-05 10:00:00 UTC", run, "python -m train.finetune")


def test_a_claim_is_exclusive_until_released_and_tells_its_own_run(tmp_path):
    """flock is per open file description: two takes in one process are two claimants."""
    model_dir = str(tmp_path / "model")
    first = claim.take(model_dir, _holder(11, run="slurm job 7 step 0"))
    assert first.held and not first.took_over and first.fd in claim.inherited()
    other = claim.take(model_dir, _holder(12))
    assert other.refused and other.holder.pid == 11
    finding = claim.refusal(model_dir, other.holder)
    assert finding.code == "RUN.in_use" and "pid 11 on host-a, since 2026-12-05" in finding.message
    assert "kill -TERM 11 on host-a" in finding.fix
    assert claim.probe(model_dir).pid == 11
    assert claim.same_run(claim.probe(model_dir), _holder(13, run="slurm job 7 step 0"))
    assert not claim.same_run(claim.probe(model_dir), _holder(13, run="slurm job 8 step 0"))
    assert not claim.same_run(claim.probe(model_dir), _holder(13))  # no run: never the same
    claim.release(first)
    assert claim.probe(model_dir) is None and first.fd not in claim.inherited()
    assert not os.path.exists(model_dir)  # the claim created it, and nothing else was written
    after = claim.take(model_dir, _holder(14))
    assert after.held and not after.took_over  # the earlier run ended cleanly
    os.close(after.fd)  # as a kill -9 would: the lock goes, the text stays
    claim._HELD.remove(after.fd)
    taken = claim.take(model_dir, _holder(15))
    assert taken.held and taken.took_over and taken.holder.pid == 14
    claim.release(taken)


def test_a_probe_waits_for_the_name_of_a_claim_being_taken(tmp_path):
    """Worker 0 locks the claim, then writes its name: a worker probing in between must not
    read the empty file as another run's claim (one CI run's multi-node job was refused so)."""
    import fcntl
    import threading

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    fd = os.open(model_dir / claim.FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, nothing written yet
    holder = _holder(21, run="slurm job 7 step 0")
    writer = threading.Timer(0.5, claim._write, (fd, holder))  # the claimant's own writer
    writer.start()
    try:
        found = claim.probe(str(model_dir))
    finally:
        writer.join()
        os.close(fd)
    assert found is not None and found.pid == 21
    assert claim.same_run(found, _holder(22, run="slurm job 7 step 0"))


def test_the_run_a_worker_belongs_to():
    assert claim.run_identity({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0"}) == "slurm job 7 step 0"
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    other = {**config, "task": {"type": "worker", "index": 0}}
    assert claim.run_identity({"TF_CONFIG": json.dumps(config)}) == claim.run_identity(
        {"TF_CONFIG": json.dumps(other)}
    )
    assert claim.run_identity({}) == "" and claim.run_identity({"TF_CONFIG": "{"}) == ""


@pytest.fixture
def small_disk(tmp_path):
    """A real 45 MB file system (tmpfs): two of the demo's training checkpoints fit, not three."""
    from tests.conftest import skip_unless_required

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=45m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        skip_unless_required(f"mounting a tmpfs needs root: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_named_and_every_earlier_checkpoint_kept(demo_assets, tmp_path, small_disk):
    from train.checkpoint import bundle

    model_dir = small_disk / "model"
    args = step_by_step_args(demo_assets, model_dir, tmp_path, steps=6, checkpoint_every=1)
    result = run_python(args)
    stderr = result.stderr
    assert result.returncode == errors.EXIT_TRAINING, stderr[-3000:]
    assert f"  warning MODEL_DIR.disk_space: --model_dir {model_dir}: " in stderr
    assert "less than 3 checkpoints (21.3 MB each, the fine-tune checkpoint's model and 1" in stderr
    assert "error: TRAIN.disk_full: training stopped at step " in stderr
    assert f"no space left writing to {model_dir} (" in stderr and "TRAIN.oom" not in stderr
    assert f"{model_dir} (0 kB free now)" not in stderr  # measured after the partial save went
    assert "every earlier checkpoint is intact, the newest is " in stderr
    saved = glob.glob(str(model_dir / "ckpt-*.index"))
    assert len(saved) >= 2
    for index in saved:  # every checkpoint the state names is whole
        assert bundle.damage(index[: -len(".index")]) is None, index
    assert not glob.glob(str(model_dir / "*_temp"))  # the cut-short save was removed

    # The preflight refuses a disk that cannot hold even one checkpoint.
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:  # until the disk is full
        while True:
            f.write(b"\0" * (1 << 20))
            f.flush()
    other = small_disk / "other"
    refused = run_python(with_flags(args, f"--model_dir={other}"), timeout=120)
    assert refused.returncode == errors.EXIT_PREFLIGHT, refused.stderr[-3000:]
    assert f"  error   MODEL_DIR.disk_space: --model_dir {other}: " in refused.stderr
    assert "less than one checkpoint" in refused.stderr
