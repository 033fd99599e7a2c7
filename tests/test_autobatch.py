"""--batch_size auto, fast parts: the search's decisions, the host's memory and cgroup limits,
the flag, the usage errors and what --fresh keeps. tests/test_autobatch_train.py measures and
trains for real."""

from __future__ import annotations

import os

import pytest

from tests.conftest import DEMO_CONFIG
from train import driver, envinfo, errors, outcomes
from train.launch import autobatch
from train.launch.autobatch import Point
from train.options import RunOptions
from train.runplan import RunPlan

GB = 10**9


def _linear(intercept: float, per_image: float, out_of_memory_from: int | None = None):
    """A memory model: peak = intercept + per_image x batch GB; OOM from a batch on."""
    calls = []

    def measure(batch: int):
        calls.append(batch)
        if out_of_memory_from is not None and batch >= out_of_memory_from:
            return Point(batch, {}, failed="out of memory on GPU:0"), {"GPU:0": 10 * GB}
        peak = int((intercept + per_image * batch) * GB)
        return Point(batch, {"host": peak // 4, "GPU:0": peak}), {"GPU:0": 10 * GB}

    return measure, calls


def test_the_search_measures_r_2r_then_the_fitted_batch_and_picks_it_when_it_fits():
    measure, calls = _linear(1.0, 0.5)  # 0.85 x 10 GB: (8.5 - 1) / 0.5 = 15 images
    found = autobatch.search(measure, 1, 0.85, 64 * GB, "log", lambda line: None)
    assert calls == [1, 2, 15]
    assert found.batch == 15
    assert found.budgets == {"GPU:0": int(8.5 * GB), "host": int(0.85 * 64 * GB)}
    assert [p.batch for p in found.points] == calls


def test_the_batch_is_a_multiple_of_the_replicas():
    measure, calls = _linear(1.0, 0.25)  # (8.5 - 1) / 0.25 = 30 -> 28 for 4 replicas
    found = autobatch.search(measure, 4, 0.85, None, "log", lambda line: None)
    assert calls[:2] == [4, 8] and found.batch == 28 and found.batch % 4 == 0


def test_a_fitted_batch_over_budget_is_refitted_below_it_and_never_chosen():
    # Memory grows faster past batch 8: the straight line through 1 and 2 overshoots.
    def measure(batch):
        peak = 1.0 + 0.5 * batch + (0.4 * (batch - 8) if batch > 8 else 0)
        return Point(batch, {"GPU:0": int(peak * GB)}), {"GPU:0": 10 * GB}

    lines = []
    found = autobatch.search(measure, 1, 0.85, None, "log", lines.append)
    over = [p.batch for p in found.points if not autobatch.fits(p, found.budgets)]
    assert over and all(found.batch < b for b in over)
    assert autobatch.fits(next(p for p in found.points if p.batch == found.batch), found.budgets)
    assert any("over the GPU:0 budget" in line for line in lines)


def test_an_out_of_memory_point_bounds_the_choice():
    measure, calls = _linear(1.0, 0.1, out_of_memory_from=12)  # the fit says 75
    found = autobatch.search(measure, 1, 0.85, None, "log", lambda line: None)
    assert found.batch is not None and found.batch < 12
    assert any(p.failed for p in found.points)


def test_no_batch_fits_when_the_smallest_is_over_budget():
    measure, calls = _linear(9.0, 0.5)  # batch 1 needs 9.5 GB of an 8.5 GB budget
    found = autobatch.search(measure, 2, 0.85, None, "log", lambda line: None)
    assert calls == [2] and found.batch is None
    finding = outcomes.no_fit(RunPlan(options=None), found)
    assert finding.code == "BATCH.no_fit"
    assert "batch 2: peak GPU:0 10.00 GB" in finding.message
    assert "GPU:0 8.50 GB" in finding.message and "--memory_fraction" in finding.fix


def test_the_search_stops_at_the_cap_per_replica_when_memory_does_not_grow():
    def flat(batch):
        return Point(batch, {"host": GB}), {}

    found = autobatch.search(flat, 1, 0.85, 64 * GB, "log", lambda line: None)
    assert found.batch == autobatch.MAX_PER_REPLICA
    assert len(found.points) <= autobatch.MAX_POINTS


# --- the host's memory --------------------------------------------------------------------------


def test_host_memory_is_the_lower_of_ram_and_every_cgroup_limit_above_the_process(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/slurm/uid_0/job_7\n0::/user.slice/job\n2:cpu:/x\n")
    v1 = tmp_path / "memory" / "slurm" / "uid_0" / "job_7"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "memory" / "slurm" / "memory.limit_in_bytes").write_text(f"{3 * GB}\n")
    (tmp_path / "memory.max").write_text("max\n")  # v2 root: no limit
    (tmp_path / "user.slice").mkdir()
    (tmp_path / "user.slice" / "memory.max").write_text(f"{5 * GB}\n")
    limits = envinfo.cgroup_memory_limits(str(proc), str(tmp_path))
    assert sorted(limits) == [3 * GB, 5 * GB, 9223372036854771712]
    assert envinfo.cgroup_memory_limits(str(tmp_path / "absent"), str(tmp_path)) == []


def test_host_memory_on_this_machine_is_at_most_its_ram():
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < envinfo.host_memory_bytes() <= total


# --- flags, usage, planning ---------------------------------------------------------------------


def test_the_flag_takes_a_number_or_auto():
    from train import flags as cli

    parser = cli.BatchSizeParser()
    assert parser.parse("auto") == "auto" and parser.parse("12") == 12
    for bad in ("eight", "0", "Auto"):
        with pytest.raises(ValueError, match=f"'{bad}' is not an integer in the range .* or auto"):
            parser.parse(bad)


@pytest.fixture
def options(good_options, tmp_path):
    def make(**overrides):
        values = dict(pipeline_config=DEMO_CONFIG, model_dir=str(tmp_path / "m"), **good_options)
        return RunOptions(**{**values, **overrides})

    return make


def test_memory_fraction_without_auto_is_a_usage_error(options):
    plan = driver.plan_run(options(memory_fraction=0.5), environ={}, visible_gpus=0)
    assert plan.stop.code == errors.EXIT_USAGE and "--memory_fraction" in plan.stop.line


def test_auto_on_several_workers_is_a_usage_error_naming_the_way_out(options):
    from tests.test_driver_plan import SLURM_WORKER_1

    plan = driver.plan_run(
        options(batch_size_auto=True), environ={**SLURM_WORKER_1, "SLURM_PROCID": "0"}
    )
    assert plan.stop.code == errors.EXIT_USAGE
    assert "--batch_size auto measures one machine; with 2 workers" in plan.stop.line


def test_auto_skips_the_config_batch_checks_and_rehearse_measures_nothing(options):
    # The zoo's batch 128 would be BATCH.tpu_sized; with auto it is not the batch that trains.
    plain = driver.plan_run(options(batch_size=None), environ={}, visible_gpus=0)
    assert "BATCH.tpu_sized" in [f.code for f in plain.findings]
    auto = driver.plan_run(
        options(batch_size=None, batch_size_auto=True), environ={}, visible_gpus=0
    )
    assert "BATCH.tpu_sized" not in [f.code for f in auto.findings]
    rehearsal = driver.with_auto_batch(
        driver.plan_run(options(batch_size_auto=True, rehearse=True), environ={}, visible_gpus=0)
    )
    assert rehearsal.lines[-1] == "batch_size auto: not measured (--rehearse trains nothing)"
    assert not os.path.exists(autobatch.probe_dir(rehearsal.options.model_dir))


def test_fresh_keeps_the_batch_measurements_it_made_for_the_new_run(tmp_path):
    from train.launch import rundir

    model_dir = tmp_path / "model"
    (model_dir / "batch_probe").mkdir(parents=True)
    (model_dir / "batch_probe" / "probe.log").write_text("measured")
    (model_dir / "ckpt-1.index").write_bytes(b"y")
    aside = rundir.move_aside(str(model_dir))
    assert (model_dir / "batch_probe" / "probe.log").read_text() == "measured"
    assert os.path.isfile(os.path.join(aside, "ckpt-1.index"))


def test_a_point_trains_the_resolved_config_at_its_batch_without_the_unwritten_transplant():
    from train.pipeline import configfile

    config = configfile.load(DEMO_CONFIG).proto
    config.train_config.fine_tune_checkpoint = "/m/transplant/ckpt-0"
    point = autobatch.probe_config(config, 6, transplant=False)
    assert point.train_config.batch_size == 6 and config.train_config.batch_size == 128
    assert point.train_config.fine_tune_checkpoint == "/m/transplant/ckpt-0"
    assert point.model == config.model and point.train_input_reader == config.train_input_reader
    # The transplant is written after the measuring: that point restores nothing.
    assert (
        autobatch.probe_config(config, 6, transplant=True).train_config.fine_tune_checkpoint == ""
    )


def test_a_batch_point_trains_what_the_run_trains(good_options, tmp_path):
    """Both specs come from one function: only the files, the length and the guards differ."""
    import dataclasses

    from train.launch import specs

    options = RunOptions(
        pipeline_config=DEMO_CONFIG, model_dir=str(tmp_path), freeze="backbone", **good_options
    )
    planned = specs.build_launch(options, str(tmp_path / "pipeline.config"), 10, 0, {})
    probe = specs.probe_spec(options, 4, planned.train.strategy)
    differs = {
        f.name
        for f in dataclasses.fields(probe)
        if getattr(probe, f.name) != getattr(planned.train, f.name)
    }
    assert differs <= {
        "pipeline_config",
        "model_dir",
        "num_train_steps",
        "checkpoint_every_n",
        "checkpoint_max_to_keep",
        "num_steps_per_iteration",
        "restore_report",
        "outcome",
        "freeze_report",
        "nan_guard",
        "gpu_limits",
    }
    assert probe.options == planned.train.options == options  # every flag, whole
    assert probe.options.freeze == "backbone"
    assert probe.model_dir.startswith(str(tmp_path / "batch_probe"))
