"""--batch_size auto for real, on CPU: short training processes measure the demo model's peak
resident memory at a few batch sizes, the largest batch within a small --memory_fraction
trains, and a rerun resumes at that batch without measuring again."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args
from train import envinfo, errors

pytestmark = [pytest.mark.slow]

# A budget a few demo images above TensorFlow's own ~1.1 GB, so the search has to fit a line.
BUDGET = 2.2e9


@pytest.fixture(scope="module")
def auto_run(demo_assets, tmp_path_factory):
    """One driver run with --batch_size auto; (result, report, model_dir, fraction)."""
    out = tmp_path_factory.mktemp("auto")
    fraction = round(BUDGET / envinfo.host_memory_bytes(), 4)
    args = demo_driver_args(
        demo_assets,
        out / "model",
        "--num_train_steps=2",
        "--batch_size=auto",
        f"--memory_fraction={fraction}",
        f"--report_json={out / 'report.json'}",
    )
    result = run_python(args)
    assert result.returncode == errors.EXIT_OK, result.stderr[-4000:]
    with open(out / "report.json") as f:
        report = json.load(f)
    return result, report, out / "model", fraction


def test_the_largest_measured_batch_within_the_budget_trains(auto_run):
    from train.pipeline import configfile

    result, report, model_dir, fraction = auto_run
    found = report["batch_auto"]
    budget = found["budgets"]["host"]
    assert budget == int(fraction * found["capacity"]["host"])
    points = {p["batch"]: p for p in found["points"]}
    assert list(points)[:2] == [1, 2], "the search starts at 1 and 2 images (1 replica)"
    fitting = [b for b, p in points.items() if not p["failed"] and p["peaks"]["host"] <= budget]
    over = [b for b in points if b not in fitting]
    chosen = found["batch"]
    assert chosen == max(b for b in fitting if not over or b < min(over))
    assert chosen >= 2, f"a {BUDGET / 1e9} GB budget fits more than one demo image: {points}"
    # Memory grows with the batch, and the chosen batch is what the resolved config trains.
    peaks = [points[b]["peaks"]["host"] for b in sorted(fitting)]
    assert peaks == sorted(peaks)
    resolved = configfile.load(str(model_dir / "pipeline.config")).proto
    assert resolved.train_config.batch_size == chosen
    assert f"train_config.batch_size: 128 -> {chosen} (--batch_size auto: measured)" in (
        result.stderr
    )
    assert "the learning rate stays as the config has it, set for batch 128" in result.stderr
    assert "ckpt-* at step 2" in result.stderr
    # The probe measured what the training uses: the run's peak is the chosen point's.
    trained = report["memory"]["peaks"]["host"]
    measured = points[chosen]["peaks"]["host"]
    assert abs(trained - measured) <= 0.1 * measured, (trained, measured)
    assert "memory: training peaked at host" in result.stderr
    # The points' scratch training folders are gone; their log stays.
    probe = model_dir / "batch_probe"
    assert sorted(os.listdir(probe)) == ["probe.log"]


def test_a_rerun_resumes_at_the_same_batch_without_measuring(auto_run, demo_assets, capfd):
    from train import driver
    from train.options import RunOptions

    _, report, model_dir, fraction = auto_run
    log = model_dir / "batch_probe" / "probe.log"
    before = log.stat().st_size
    options = RunOptions(
        pipeline_config=DEMO_CONFIG,
        model_dir=str(model_dir),
        checkpoint=demo_assets["prefix"],
        label_map=demo_assets["label_map"],
        train_input_path=(demo_assets["train"],),
        eval_input_path=(demo_assets["eval"],),
        num_train_steps=4,
        batch_size_auto=True,
        memory_fraction=fraction,
    )
    plan = driver.with_auto_batch(driver.plan_run(options, environ={}, visible_gpus=0))
    assert plan.stop is None and plan.launch.start_step == 2
    assert plan.resolved_config.train_config.batch_size == report["batch_auto"]["batch"]
    assert plan.auto_batch == {
        "batch": report["batch_auto"]["batch"],
        "resumed_run": str(model_dir / "pipeline.config"),
    }
    assert "as the run being resumed" in capfd.readouterr().err
    assert log.stat().st_size == before


def test_no_batch_within_the_budget_is_batch_no_fit_exit_3(demo_assets, tmp_path):
    """--preflight_only measures too; 1 % of the memory is below TensorFlow's own footprint."""
    report = tmp_path / "report.json"
    args = demo_driver_args(
        demo_assets,
        tmp_path / "model",
        "--preflight_only",
        "--batch_size=auto",
        "--memory_fraction=0.01",
        f"--report_json={report}",
    )
    result = run_python(args)
    assert result.returncode == errors.EXIT_PREFLIGHT, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-2:]
    assert last[0].startswith("error: BATCH.no_fit: --batch_size auto: batch 1: peak host ")
    assert "(over the host budget); the budget is 0.01 of the memory (host " in last[0]
    assert last[1].startswith("  fix: raise --memory_fraction")
    assert "Traceback" not in result.stderr
    with open(report) as f:
        document = json.load(f)
    assert "BATCH.no_fit" in [f["code"] for f in document["findings"]]
    assert document["outcome"]["exit_code"] == errors.EXIT_PREFLIGHT
    assert not (tmp_path / "model" / "pipeline.config").exists()  # nothing was started
