"""The CLI contract: exit codes, one-line errors, reports, and the input never modified."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.conftest import DEMO_CONFIG, run_python
from tests.helpers import demo_driver_args
from train import errors

CLI = ["-m", "train.finetune"]


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _assert_no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        ([], "missing required flag(s): --pipeline_config, --model_dir"),
        (
            ["--pipeline_config=x", "--model_dir=y", "--bogus=1"],
            "Unknown command line flag 'bogus'",
        ),
        (["--pipeline_config=x", "--model_dir=y", "--fix=sometimes"], "--fix"),
        (["--pipeline_config=x", "--model_dir=y", "--num_train_steps=0"], "num_train_steps"),
        (["--pipeline_config=x", "--model_dir=y", "stray"], "unexpected arguments: stray"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, needle):
    result = run_python(CLI + args)
    assert result.returncode == errors.EXIT_USAGE
    assert needle in result.stderr.splitlines()[0]
    _assert_no_traceback(result)


def test_missing_config_is_a_usage_error(tmp_path):
    result = run_python(
        CLI + [f"--pipeline_config={tmp_path}/nope.config", f"--model_dir={tmp_path}/m"]
    )
    assert result.returncode == errors.EXIT_USAGE
    assert f"{tmp_path}/nope.config: file not found" in result.stderr
    _assert_no_traceback(result)


def test_parse_error_names_file_line_column(tmp_path):
    config = tmp_path / "bad.config"
    config.write_text("model {\n  ssd {\n    num_clases: 3\n  }\n}\n")
    result = run_python(CLI + [f"--pipeline_config={config}", f"--model_dir={tmp_path}/m"])
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert f"PARSE: {config}:3:5:" in result.stderr
    _assert_no_traceback(result)


def test_zoo_config_without_paths_fails_preflight_and_starts_nothing(tmp_path):
    before = _digest(DEMO_CONFIG)
    report = tmp_path / "report.json"
    result = run_python(
        CLI
        + [
            f"--pipeline_config={DEMO_CONFIG}",
            f"--model_dir={tmp_path}/m",
            f"--report_json={report}",
        ]
    )
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert result.stderr.count("PLACEHOLDER:") == 5
    assert not (tmp_path / "m").exists()
    codes = [f["code"] for f in json.loads(report.read_text())["findings"]]
    assert codes.count("PLACEHOLDER") == 5
    assert _digest(DEMO_CONFIG) == before
    _assert_no_traceback(result)


def _demo_args(assets, model_dir, *extra):
    return demo_driver_args(assets, model_dir, "--batch_size=2", *extra)


def test_preflight_only_json_report(demo_assets, tmp_path):
    report = tmp_path / "r.json"
    result = run_python(
        _demo_args(
            demo_assets,
            tmp_path / "m",
            "--preflight_only",
            "--num_train_steps=5",
            f"--report_json={report}",
        )
    )
    assert result.returncode == errors.EXIT_OK, result.stderr
    assert "[fixed in the resolved config]" in result.stderr
    document = json.loads(report.read_text())
    assert set(document) >= {"findings", "checkpoint", "config", "versions"}
    for finding in document["findings"]:
        assert set(finding) >= {"code", "severity", "message", "fix", "fixable"}
    assert {f["code"] for f in document["findings"] if f["severity"] == "error"} == {
        "CKPT_PATH.tarball_root",
        "CKPT_TYPE",
        "NUM_CLASSES",
    }
    assert document["checkpoint"]["kind"] == "detection"
    assert document["config"]["num_classes"] == 3
    assert "model.ssd.num_classes" in {c["field"] for c in document["config"]["changes"]}
    assert document["versions"]["tf-models-research-object-detection"] == "2.8.0.post1"
    assert not (tmp_path / "m").exists()


def test_fix_never_turns_fixable_findings_into_a_failure(demo_assets, tmp_path):
    result = run_python(
        _demo_args(demo_assets, tmp_path / "m", "--fix=never", "--num_train_steps=5")
    )
    assert result.returncode == errors.EXIT_PREFLIGHT
    assert "[fixable: --fix=auto]" in result.stderr
    assert "cannot fix" in result.stderr.splitlines()[-1]
    _assert_no_traceback(result)


def test_resolved_config_never_overwrites_the_input(demo_assets, tmp_path):
    # Tutorial layout: models/my_ssd/pipeline.config with --model_dir models/my_ssd.
    model_dir = tmp_path / "my_ssd"
    model_dir.mkdir()
    config = model_dir / "pipeline.config"
    config.write_text(open(DEMO_CONFIG).read())
    before = _digest(config)
    from train import driver
    from train.options import RunOptions

    options = RunOptions(pipeline_config=str(config), model_dir=str(model_dir))
    assert driver._resolved_path(options, str(model_dir)) == os.path.join(
        model_dir, "pipeline.resolved.config"
    )
    assert _digest(config) == before
