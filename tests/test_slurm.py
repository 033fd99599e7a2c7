"""The Slurm job scripts on a real single-node Slurm (Debian slurm-wlm, started here).

tests/slurm/slurm_up.sh installs and starts munge, slurmctld and slurmd (root only; the tests
skip with the reason elsewhere). Jobs run the real driver with the demo model at 128x128: a
two-task job is two MultiWorkerMirroredStrategy workers talking over loopback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import DEMO_CONFIG, ROOT, skip_unless_required
from tests.helpers import demo_driver_args, small_image_config, split_records

pytestmark = pytest.mark.slow
SLURM = os.path.join(ROOT, "tests", "slurm")


@pytest.fixture(scope="module")
def slurm():
    """A running one-node Slurm for this module's tests."""
    if os.geteuid() != 0:
        skip_unless_required("Slurm tests start daemons and need root")
    up = subprocess.run(
        ["bash", os.path.join(SLURM, "slurm_up.sh")], capture_output=True, text=True
    )
    if up.returncode == 77:  # not root, or this machine runs a real Slurm of its own
        skip_unless_required(up.stderr.strip().splitlines()[-1])
    if up.returncode != 0:
        pytest.fail(f"slurm_up.sh failed:\n{up.stderr[-3000:]}")
    yield
    subprocess.run(["bash", os.path.join(SLURM, "slurm_down.sh")], capture_output=True)


def _job(job_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(job_id: str, states: tuple[str, ...], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = _job(job_id)
        if job.get("JobState") in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} never reached {states}: {job}"
        time.sleep(1)


def _wait_for_text(path, pattern: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text, re.M):
            return text
        assert time.monotonic() < deadline, f"{pattern!r} never appeared:\n{text[-3000:]}"
        time.sleep(0.5)


def _restart_now(job_id: str) -> None:
    """A requeued job waits ~2 min (cred_expire) before it may start again; skip that wait."""
    _wait(job_id, ("PENDING",), 120)
    # Slurm compares credential times in whole seconds: a start within the second of the
    # requeue is refused ("Job credential revoked") and the job fails.
    time.sleep(3)
    deadline = time.monotonic() + 60
    while _job(job_id).get("JobState") == "PENDING":
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
        assert time.monotonic() < deadline, "the requeued job did not start"
        time.sleep(1)


def _submit(
    tmp_path, script: str, sbatch_args: list[str], driver_args: list[str], **env_extra
) -> str:
    env = {
        **os.environ,
        "TFOD_ROOT": ROOT,
        "TFOD_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env_extra,
    }
    result = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--gpus-per-node=0",  # the scripts ask for GPUs; this machine has none
            *sbatch_args,
            os.path.join(ROOT, "scripts", "slurm", script),
            *driver_args[2:],  # without "-m train.finetune": the script runs the driver
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    return result.stdout.strip().split(";")[0]


def _final_step(model_dir) -> int:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(model_dir))
    return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_multi_node_job_two_workers_preempted_by_usr2_requeue_and_resume(
    slurm, demo_assets, tmp_path
):
    steps = 40
    config = small_image_config(DEMO_CONFIG, str(tmp_path / "small.config"))
    shards = split_records(demo_assets["train"], str(tmp_path / "train.record"), 2)
    model_dir = tmp_path / "m"
    args = demo_driver_args(
        demo_assets,
        model_dir,
        f"--train_input_path={shards}",
        f"--num_train_steps={steps}",
        "--batch_size=2",
        "--checkpoint_every_n=1000",  # only the preemption's save, and the final one
        "--num_steps_per_iteration=1",
        "--log_every_s=1",
        "--fresh",  # harmless on the first run; the requeued run must drop it and resume
        config=config,
    )
    args = [a for a in args if not a.startswith("--train_input_path=") or a.endswith(shards)]
    job = _submit(
        tmp_path,
        "multi_node.sbatch",
        ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1"],
        args,
    )
    output = tmp_path / f"slurm-tfod-finetune-mn-{job}.out"
    _wait_for_text(output, r"^step ([4-9]|\d\d)/", 600)
    subprocess.run(["scancel", "--signal=USR2", "--batch", job], check=True)
    text = _wait_for_text(output, r"requeueing job", 300)
    saved = re.search(r"stopped by SIGUSR2: saved \S+ at step (\d+)", text)
    assert saved, text[-3000:]
    at = int(saved.group(1))
    assert 4 <= at < steps
    assert "worker 1 stopped with worker 0, which saved step" in text  # both stopped together

    _restart_now(job)
    finished = _wait(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 900)
    text = output.read_text()
    assert finished["JobState"] == "COMPLETED", text[-3000:]
    assert finished["Restarts"] == "1"
    assert "MultiWorkerMirroredStrategy: worker 0 of 2 (slurm)" in text
    assert "MultiWorkerMirroredStrategy: worker 1 of 2 (slurm)" in text
    assert "requeued run: resuming (--fresh dropped)" in text
    assert text.count(f"training: {steps - at} steps from step {at}") == 2  # both resumed
    assert _final_step(model_dir) == steps
    assert not [p for p in os.listdir(model_dir) if p.startswith("temp_worker")]


def test_single_node_job_requeued_from_outside_saves_and_resumes(slurm, demo_assets, tmp_path):
    steps = 40
    config = small_image_config(DEMO_CONFIG, str(tmp_path / "small.config"))
    model_dir = tmp_path / "m"
    args = demo_driver_args(
        demo_assets,
        model_dir,
        f"--num_train_steps={steps}",
        "--batch_size=2",
        "--checkpoint_every_n=1000",
        "--num_steps_per_iteration=1",
        "--log_every_s=1",
        config=config,
    )
    job = _submit(tmp_path, "single_node.sbatch", ["--cpus-per-task=2"], args, TFOD_REHEARSE="1")
    output = tmp_path / f"slurm-tfod-finetune-{job}.out"
    _wait_for_text(output, r"^step ([4-9]|\d\d)/", 600)
    assert "rehearsal passed" in output.read_text()  # TFOD_REHEARSE: before the srun step
    subprocess.run(["scontrol", "requeue", job], check=True)  # what preemption does: TERM
    text = _wait_for_text(output, r"stopped by SIGTERM", 120)
    at = int(re.search(r"stopped by SIGTERM: saved \S+ at step (\d+)", text).group(1))
    assert 4 <= at < steps

    _restart_now(job)
    finished = _wait(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 900)
    text = output.read_text()
    assert finished["JobState"] == "COMPLETED", text[-3000:]
    assert f"training: {steps - at} steps from step {at}" in text
    assert text.count("rehearsal passed") == 1  # the requeued run goes straight to training
    assert _final_step(model_dir) == steps


def test_a_failed_rehearsal_starts_no_step(slurm, demo_assets, tmp_path):
    text = open(DEMO_CONFIG, encoding="utf-8").read()
    config = tmp_path / "bad.config"
    config.write_text(  # a builder error no preflight rule mirrors
        text.replace(
            "data_augmentation_options {",
            "data_augmentation_options {\n    random_crop_pad_image {\n      "
            "min_padded_size_ratio: 1.0\n    }\n  }\n  data_augmentation_options {",
            1,
        )
    )
    args = demo_driver_args(demo_assets, tmp_path / "m", "--num_train_steps=5", config=str(config))
    job = _submit(tmp_path, "single_node.sbatch", ["--cpus-per-task=2"], args, TFOD_REHEARSE="1")
    finished = _wait(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 300)
    output = (tmp_path / f"slurm-tfod-finetune-{job}.out").read_text()
    assert finished["JobState"] == "FAILED" and finished["ExitCode"] == "3:0", output[-2000:]
    assert "error: INPUT.pipeline:" in output and "min_padded_size_ratio" in output
    assert "rehearsal failed (status 3): no step started" in output
    assert "training:" not in output and "step ended" not in output
