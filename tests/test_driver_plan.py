"""The plan of a whole invocation, looked at in-process: who does what, where it stops."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import DEMO_CONFIG
from train import driver, errors
from train.options import RunOptions

SLURM_WORKER_1 = {
    "SLURM_PROCID": "1",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_STEP_NODELIST": "n[1-2]",
    "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
    "SLURM_JOB_ID": "7",
}


@pytest.fixture
def options(good_options):
    """RunOptions of a correct demo fine-tune (conftest's good_options), with overrides."""

    def make(model_dir, **overrides):
        values = dict(pipeline_config=DEMO_CONFIG, model_dir=str(model_dir), **good_options)
        return RunOptions(**{**values, **overrides})

    return make


def _plan(options, environ=None):
    return driver.plan_run(options, environ=environ or {}, visible_gpus=0)


def test_the_chief_plans_a_training_and_writes_nothing_while_planning(
    options, demo_assets, tmp_path
):
    report = tmp_path / "r.json"
    plan = _plan(options(tmp_path / "m", report_json=str(report), eval=True))
    assert plan.stop is None
    assert plan.duties.report and plan.duties.summaries and plan.duties.prepare == ""
    assert plan.resolved_path == str(tmp_path / "m" / "pipeline.config")
    assert plan.launch.num_train_steps == 10 and plan.launch.start_step == 0
    assert plan.launch.eval is not None
    assert "num_classes: 3" in plan.resolved_text
    assert not (tmp_path / "m").exists() and not report.exists()


def test_other_workers_write_no_report_and_work_in_their_own_folder(options, demo_assets, tmp_path):
    from tests.helpers import split_records

    shards = split_records(demo_assets["train"], str(tmp_path / "train.record"), 2)
    two_workers = options(
        tmp_path / "m",
        report_json=str(tmp_path / "r.json"),
        train_input_path=(shards,),
        eval=True,
        tensorboard=True,
    )
    chief = _plan(two_workers, {**SLURM_WORKER_1, "SLURM_PROCID": "0"})
    worker = _plan(two_workers, SLURM_WORKER_1)
    assert chief.stop is None and worker.stop is None, worker.lines
    assert chief.duties.report and chief.duties.tensorboard and chief.launch.eval is not None
    assert not worker.duties.report and not worker.duties.summaries
    assert not worker.duties.tensorboard and worker.launch.eval is None
    assert worker.resolved_path == str(tmp_path / "m" / "workers" / "rank-1" / "pipeline.config")
    assert worker.launch.model_dir == chief.launch.model_dir  # one shared model_dir


def test_a_config_inside_model_dir_is_never_the_resolved_path(options, demo_assets, tmp_path):
    model_dir = tmp_path / "my_ssd"
    model_dir.mkdir()
    config = model_dir / "pipeline.config"
    shutil.copy(DEMO_CONFIG, config)
    plan = _plan(options(model_dir, pipeline_config=str(config)))
    assert plan.stop is None
    assert plan.resolved_path == str(model_dir / "pipeline.resolved.config")


def test_where_the_invocation_stops(options, demo_assets, tmp_path):
    preflight_only = _plan(options(tmp_path / "m", preflight_only=True))
    assert preflight_only.stop.code == errors.EXIT_OK and preflight_only.launch is None
    rehearsal = _plan(options(tmp_path / "m", rehearse=True))
    assert rehearsal.stop is None and rehearsal.duties.prepare == "run"
    assert rehearsal.launch is None and rehearsal.prepare.rehearse
    blocked = _plan(options(tmp_path / "m", fix="never"))
    assert blocked.stop.code == errors.EXIT_PREFLIGHT
    assert "cannot fix" in blocked.stop.line
    gpus = _plan(options(tmp_path / "m", gpus="3"))
    assert gpus.stop.code == errors.EXIT_USAGE and gpus.preflight is None
    into_input = _plan(options(tmp_path / "m", report_json=demo_assets["label_map"]))
    assert into_input.stop.code == errors.EXIT_USAGE and not into_input.duties.report
    assert not os.path.exists(tmp_path / "m")
